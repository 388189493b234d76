"""Typed settings, read once from ``TASKAPI_*`` environment variables."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit, urlunsplit

from limits import parse_many
from platformdirs import user_data_dir
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from taskapi.db import DEFAULT_MAX_OVERFLOW, DEFAULT_POOL_SIZE

MIN_SECRET_BYTES = 32
SECRET_FILE_NAME = "secret_key"
# The installed package's own folder: nothing is ever written under it.
PACKAGE_DIR = Path(__file__).resolve().parent
INSTANCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")


def default_data_dir() -> Path:
    """The per-user data folder (``$XDG_DATA_HOME/taskapi``, usually ~/.local/share/taskapi),
    the same whatever the current directory, so a second terminal and cron find one database."""
    return Path(user_data_dir("taskapi", appauthor=False))


class SettingsError(Exception):
    """A setting has a bad value; the message names the variable."""


class Settings(BaseSettings):
    """Every knob of taskapi. Unknown ``TASKAPI_*`` variables are ignored."""

    # An empty variable (TASKAPI_LOG_FORMAT=) means "use the default", as in the env example.
    model_config = SettingsConfigDict(
        env_prefix="TASKAPI_", extra="ignore", frozen=True, env_ignore_empty=True
    )

    env: Literal["development", "production"] = "development"
    # Always absolute: a relative TASKAPI_DATA_DIR is resolved against the current directory
    # once, when settings are read.
    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str = ""
    secret_key: str = ""
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    cors_max_age: int = Field(default=600, ge=0)
    bcrypt_rounds: int = Field(default=12, ge=4, le=16)
    access_token_seconds: int = Field(default=900, ge=1)
    refresh_token_days: int = Field(default=30, ge=1)
    refresh_grace_seconds: int = Field(default=5, ge=0, le=5)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    require_if_match: bool = False
    tombstone_days: int = Field(default=30, ge=1)
    workers: int = Field(default=2, ge=1)
    # Names one `taskapi serve` among several on a host (process title, runtime files);
    # `--instance-name` sets it, and it defaults to the port (`port8000`).
    instance_name: str | None = None
    # Production runs on PostgreSQL; SQLite only when this says so (one process, one machine).
    allow_sqlite_in_production: bool = False
    # bcrypt threads per worker; unset: the usable cores shared among the workers (at least 1).
    threads: int | None = Field(default=None, ge=1)
    # PostgreSQL connections per worker: kept open, and opened beyond those at a peak.
    db_pool_size: int = Field(default=DEFAULT_POOL_SIZE, ge=1, le=1000)
    db_max_overflow: int = Field(default=DEFAULT_MAX_OVERFLOW, ge=0, le=1000)
    # Cookie mode for browser SPAs.
    cookie_secure: bool | None = None
    cookie_samesite: Literal["Lax", "Strict", "None"] = "Lax"
    cookie_domain: str | None = None
    # Rate limits, proxies and shared state.
    ratelimit_enabled: bool = True
    ratelimit_default: str = "300/minute"
    ratelimit_login: str = "10/minute"
    ratelimit_login_failures: str = "5/15 minutes"
    ratelimit_login_email: str = "50/hour"
    ratelimit_register: str = "10/hour"
    ratelimit_password_checks: str = "10/minute"
    ratelimit_password_checks_address: str = "30/minute"
    # Everything a user can grow is bounded.
    max_tasks_per_user: int = Field(default=100_000, ge=1)
    max_lists_per_user: int = Field(default=1_000, ge=1)
    max_tokens_per_user: int = Field(default=50, ge=1)
    max_sessions_per_user: int = Field(default=50, ge=1)
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    redis_url: str | None = None
    redis_required: bool = False
    trusted_proxies: int = Field(default=0, ge=0, le=10)
    hsts: bool = False
    log_format: Literal["json", "console"] | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # Slow clients: seconds to send a request's line and headers (also the keep-alive idle
    # time), and to send its whole body; then the connection is closed (a body gets a 408).
    header_timeout_seconds: int = Field(default=10, ge=1, le=300)
    body_timeout_seconds: int = Field(default=30, ge=1, le=3600)

    # Mail (account recovery and security notices). "file" writes each message as an .eml
    # file under <data_dir>/mail and logs its links; "smtp" delivers through TASKAPI_SMTP_*.
    mail_backend: Literal["file", "smtp"] = "file"
    mail_from: str = "taskapi <no-reply@localhost>"
    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_starttls: bool = True
    smtp_ssl: bool = False
    smtp_timeout_seconds: int = Field(default=10, ge=1, le=300)
    # The sender runs inside ``taskapi serve`` unless this is false (then run
    # ``taskapi worker`` or ``taskapi mail send-pending`` apart).
    mail_sender: bool = True
    mail_poll_seconds: float = Field(default=2.0, gt=0, le=3600)
    # Links in mail point at the SPA: <public_url><reset_path>?token=...
    public_url: str = "http://localhost:5173"
    reset_path: str = "/reset-password"
    verify_path: str = "/verify-email"
    product_name: str = "taskapi"
    reset_token_minutes: int = Field(default=60, ge=1, le=1440)
    verify_token_hours: int = Field(default=48, ge=1, le=720)
    require_verified_email: bool = False
    ratelimit_password_reset_email: str = "3/hour"
    ratelimit_password_reset_address: str = "20/hour"
    ratelimit_verify_resend: str = "3/hour"
    ratelimit_email_change: str = "5/hour"

    # Metrics (Prometheus) and traces (OpenTelemetry); all off by default. METRICS_PORT opens
    # a listener in the server's master process on METRICS_BIND; METRICS_TOKEN answers
    # GET /metrics on the public port to "Authorization: Bearer <token>" only (404 otherwise).
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_bind: str = "127.0.0.1"
    metrics_token: SecretStr | None = None
    # The OTLP/HTTP collector's base URL (http://collector:4318); spans go to <it>/v1/traces.
    otel_endpoint: str | None = None
    otel_service_name: str = "taskapi"

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        """Resolve ``~`` and a relative folder once, against the current directory."""
        return Path(os.path.abspath(value.expanduser()))

    @field_validator("instance_name")
    @classmethod
    def _instance_name(cls, value: str | None) -> str | None:
        """A short name usable in a file name and a process title."""
        if value is not None and not INSTANCE_NAME.fullmatch(value):
            raise ValueError("must be 1 to 40 letters, digits, '.', '_' or '-'")
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        """Accept a comma-separated string of exact origins."""
        if isinstance(value, str):
            return tuple(o.strip().rstrip("/") for o in value.split(",") if o.strip())
        return value

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        """Accept a comma-separated string of host names (``api.example.com``, ``.example.com``
        for every subdomain, optionally with ``:port``)."""
        if isinstance(value, str):
            return tuple(h.strip().lower() for h in value.split(",") if h.strip())
        return value

    @field_validator("cors_origins")
    @classmethod
    def _exact_origins_only(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Wildcards with credentials would trust every site, so only exact origins pass."""
        for origin in value:
            if set(origin) & set("*\\]?$^[()") or not origin.startswith(("http://", "https://")):
                raise ValueError(f"{origin!r} is not an exact origin like https://app.example.com")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_driver(cls, value: str) -> str:
        """Accept plain postgres:// URLs (as hosting platforms give them) and use psycopg 3."""
        if not value:
            return value
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                value = "postgresql+psycopg://" + value[len(prefix) :]
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError("is not a database URL such as postgresql+psycopg://host/db") from None
        if url.get_backend_name() not in ("sqlite", "postgresql"):
            raise ValueError("must be a SQLite or PostgreSQL URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        """Only Redis URLs; an empty value means in-memory limits."""
        if not value:
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator(
        "ratelimit_default",
        "ratelimit_login",
        "ratelimit_login_failures",
        "ratelimit_login_email",
        "ratelimit_register",
        "ratelimit_password_checks",
        "ratelimit_password_checks_address",
        "ratelimit_password_reset_email",
        "ratelimit_password_reset_address",
        "ratelimit_verify_resend",
        "ratelimit_email_change",
    )
    @classmethod
    def _rate_limit_notation(cls, value: str) -> str:
        """Limits use the ``limits`` notation, such as ``300/minute`` or ``5/15 minutes``."""
        try:
            parse_many(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate limit such as 300/minute") from None
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        """An absolute http(s) URL without a trailing slash (paths are appended to it)."""
        if not value.startswith(("http://", "https://")) or " " in value:
            raise ValueError("must be an absolute URL such as https://app.example.com")
        return value.rstrip("/")

    @field_validator("reset_path", "verify_path")
    @classmethod
    def _link_path(cls, value: str) -> str:
        """A path on the SPA, starting with a slash."""
        if not value.startswith("/") or any(c in value for c in " ?#"):
            raise ValueError("must be a path such as /reset-password")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        """Accept log levels in any case."""
        return value.upper() if isinstance(value, str) else value

    @field_validator("cookie_samesite", mode="before")
    @classmethod
    def _capitalise_samesite(cls, value: object) -> object:
        """Accept lax/strict/none in any case."""
        return value.capitalize() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_production(self) -> Settings:
        """Refuse a development secret or insecure cookies in production."""
        if self.env == "production" and len(self.secret_key.encode()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"TASKAPI_SECRET_KEY must be set to at least {MIN_SECRET_BYTES} bytes in production"
            )
        if self.env == "production" and not self.allowed_hosts:
            raise ValueError("TASKAPI_ALLOWED_HOSTS must list the API's host names in production")
        if self.env == "production" and self.uses_sqlite and not self.allow_sqlite_in_production:
            raise ValueError(
                "TASKAPI_DATABASE_URL must be a PostgreSQL URL in production (or set "
                "TASKAPI_ALLOW_SQLITE_IN_PRODUCTION=true to run on SQLite anyway)"
            )
        if self.mail_backend == "smtp" and not self.smtp_host:
            raise ValueError("TASKAPI_MAIL_BACKEND=smtp requires TASKAPI_SMTP_HOST")
        if self.smtp_ssl and self.smtp_starttls:
            raise ValueError("set one of TASKAPI_SMTP_SSL and TASKAPI_SMTP_STARTTLS, not both")
        if self.cookie_samesite == "None" and not self.secure_cookies:
            raise ValueError("TASKAPI_COOKIE_SAMESITE=None requires TASKAPI_COOKIE_SECURE=true")
        return self

    @property
    def is_production(self) -> bool:
        """True when running with production defaults."""
        return self.env == "production"

    @property
    def secure_cookies(self) -> bool:
        """Cookies are Secure by default in production only."""
        return self.is_production if self.cookie_secure is None else self.cookie_secure

    @property
    def bcrypt_threads(self) -> int:
        """Each worker's thread pool for bcrypt: ``threads``, else the cores this process may
        use (``usable_cores``) divided among the workers. Sized to the cores, a login storm's
        hashes queue for a thread instead of all running at once beside the reads: more
        threads than cores hashed no faster, and took the CPU from the event loops (an
        8-connection GET's p99 beside a storm: x1.53 of its value alone with 4 threads per
        worker on 2 cores, x1.22 with 1)."""
        if self.threads is not None:
            return self.threads
        return max(1, usable_cores() // self.workers)

    @property
    def uses_sqlite(self) -> bool:
        """True when the database is SQLite (the default, a file in the data folder)."""
        return not self.database_url or self.database_url.startswith("sqlite")

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data folder."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'taskapi.db').resolve()}"


def usable_cores(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The CPUs this process may use: those it may run on (its affinity: a cpuset, taskset),
    fewer when its cgroup's CPU quota (a container's CPU limit, cgroup v2) allows less."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(quota) // int(period)))
    except (OSError, ValueError):  # no cgroup v2 file here, or not the expected shape
        pass
    return cores


def _private_folder(path: Path) -> None:
    """Create the folder ``path`` 0700 whatever the umask; an existing one keeps its mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        return
    os.chmod(path, 0o700)  # the umask can only have taken bits away, never added any


def _private_database_file(url: str) -> None:
    """Create a missing SQLite database file 0600 before any engine opens it.

    SQLite would create it 0644 less the umask, and it gives the ``-wal`` and ``-shm`` files
    the database file's own permissions. An existing file keeps its mode; an empty file is an
    empty database to SQLite. In-memory databases and PostgreSQL have no file.
    """
    parsed = make_url(url)
    path = parsed.database
    if parsed.get_backend_name() != "sqlite" or not path or path == ":memory:":
        return
    if path.startswith("file:") or "uri" in parsed.query:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:  # it exists, or its folder does not: then SQLite reports the error
        return
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _development_secret(data_dir: Path) -> str:
    """Create (once) and return the development secret kept in the data folder."""
    _private_folder(data_dir)
    path = data_dir / SECRET_FILE_NAME
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    os.fchmod(fd, 0o600)  # exactly, whatever the umask took away
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


SECRET_FIELD_ENDINGS = ("secret_key", "password", "token")


def masked_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (database, Redis, collector URLs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def masked_settings(settings: Settings) -> dict[str, str]:
    """Every setting as ``TASKAPI_<NAME>`` to text: secrets (keys, passwords, tokens) shown
    as ``***`` when set, and passwords inside URLs masked."""
    shown: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
            text = "***" if value else ""
        elif isinstance(value, tuple):
            text = ",".join(map(str, value))
        elif value is None:
            text = ""
        elif isinstance(value, bool):
            text = str(value).lower()
        else:
            text = str(value)
        if name.endswith(SECRET_FIELD_ENDINGS) and text:
            text = "***"
        elif "://" in text:
            text = masked_url(text)
        shown[f"TASKAPI_{name.upper()}"] = text
    return shown


def describe_error(error: ValidationError) -> str:
    """Turn a settings validation error into one line naming the variable."""
    first = error.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    name = f"TASKAPI_{field.upper()}" if field else "settings"
    message = first["msg"].removeprefix("Value error, ")
    return f"invalid setting {name}: {message}"


def load_settings(*, prepare: bool = True, **overrides: object) -> Settings:
    """Read settings from the environment; create the private data folder, secret and SQLite file.

    The data folder is created 0700, the secret and a SQLite database file 0600. With
    ``prepare=False`` nothing is created (``taskapi info``, the health check).
    """
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise SettingsError(describe_error(error)) from None
    if settings.data_dir.resolve().is_relative_to(PACKAGE_DIR):
        raise SettingsError(
            f"invalid setting TASKAPI_DATA_DIR: {settings.data_dir} is inside the installed "
            "package; choose a folder outside it"
        )
    if not prepare:
        return settings
    if not settings.secret_key:
        secret = _development_secret(settings.data_dir)
        settings = settings.model_copy(update={"secret_key": secret})
    if not settings.database_url:
        _private_folder(settings.data_dir)
    _private_database_file(settings.sqlalchemy_url)
    return settings
