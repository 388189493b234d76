# syntax=docker/dockerfile:1
# Build stage: resolve the locked dependencies into a virtual environment with uv.
FROM python:3.11-slim-bookworm AS build
# The same uv release that wrote uv.lock, from PyPI.
RUN pip install --no-cache-dir uv==0.13.9
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-dev --no-install-project
COPY taskapi ./taskapi
RUN uv sync --locked --no-dev --no-editable

# Runtime stage: the environment, owned by root and read-only for the runtime user, who
# may write only to the data folder (a volume).
FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin taskapi \
    && install -d -o taskapi -g taskapi -m 0700 /var/lib/taskapi
WORKDIR /app
# No --chown: root keeps the code and the virtual environment (files 0644, folders 0755).
COPY --from=build /app/.venv /app/.venv
# TASKAPI_PORT is read by `taskapi serve` and by `taskapi healthcheck` alike, so the health
# check follows the port. Production refuses SQLite: set TASKAPI_DATABASE_URL (PostgreSQL),
# or TASKAPI_ALLOW_SQLITE_IN_PRODUCTION=true for one container on the volume below.
ENV PATH="/app/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TASKAPI_ENV=production \
    TASKAPI_DATA_DIR=/var/lib/taskapi \
    TASKAPI_HOST=0.0.0.0 \
    TASKAPI_PORT=8000
VOLUME ["/var/lib/taskapi"]
USER 10001
EXPOSE 8000
# GET /api/health on 127.0.0.1:$TASKAPI_PORT, with a Host from TASKAPI_ALLOWED_HOSTS.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["taskapi", "healthcheck"]
# `taskapi serve` applies migrations (once, under an advisory lock) and then runs gunicorn.
CMD ["taskapi", "serve"]
