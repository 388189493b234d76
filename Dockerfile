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

# Runtime stage: only the environment and a non-root user.
FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin taskapi \
    && mkdir -p /app/instance && chown taskapi:taskapi /app/instance
WORKDIR /app
COPY --from=build --chown=taskapi:taskapi /app/.venv /app/.venv
ENV PATH="/app/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    TASKAPI_ENV=production \
    TASKAPI_DATA_DIR=/app/instance
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/api/health', timeout=2).status != 200)"]
# `taskapi serve` applies migrations (once, under an advisory lock) and then runs gunicorn.
CMD ["taskapi", "serve", "--host", "0.0.0.0", "--port", "8000"]
