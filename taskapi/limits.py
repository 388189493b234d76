"""Rate limits: flask-limiter for request budgets, plus login-failure counters.

Budgets are shared by every worker and instance through Redis when ``TASKAPI_REDIS_URL`` is
set, and kept in process memory otherwise. When Redis stops answering, flask-limiter falls
back to memory (one warning) and returns to Redis when it is back. The contract's
``RateLimit-*`` headers are written here, not by the library, whose reset is an epoch time.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from flask import Flask, Response, g, request
from flask_jwt_extended import decode_token
from flask_limiter import Limiter
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from taskapi.errors import ApiError
from taskapi.settings import Settings

log = logging.getLogger("taskapi.limits")
EXEMPT_BLUEPRINTS = ("health", "docs")
RETRY_PRIMARY_SECONDS = 5.0
# Fail fast when Redis hangs, so the in-memory fallback takes over within a second.
REDIS_TIMEOUTS: dict[str, Any] = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}


def client_address() -> str:
    """The client's address (the real one: ProxyFix has already applied trusted hops)."""
    return request.remote_addr or "unknown"


def user_or_address() -> str:
    """Authenticated requests count per user, others per address; never raises."""
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        try:
            claims = decode_token(header[7:])
            if claims.get("type") == "access":
                return f"user:{claims['sub']}"
        except Exception:  # noqa: S110 - any bad token is simply anonymous here
            pass
    return f"addr:{client_address()}"


def _is_exempt() -> bool:
    """Preflights, health checks and the documentation are never limited."""
    return request.method == "OPTIONS" or request.blueprint in EXEMPT_BLUEPRINTS


def _storage_uri(settings: Settings) -> str:
    """Redis when configured, process memory otherwise."""
    return settings.redis_url or "memory://"


def make_limiter(app: Flask, settings: Settings) -> Limiter:
    """Create the limiter with the per-user (or per-address) application-wide budget."""
    app.config["RATELIMIT_ENABLED"] = settings.ratelimit_enabled
    limiter = Limiter(
        user_or_address,
        app=app,
        application_limits=[settings.ratelimit_default],
        storage_uri=_storage_uri(settings),
        storage_options=REDIS_TIMEOUTS if settings.redis_url else {},
        strategy="fixed-window",
        headers_enabled=False,
        in_memory_fallback_enabled=True,
        key_prefix="taskapi",
    )
    limiter.request_filter(_is_exempt)
    app.after_request(_write_headers(limiter))
    # Route limits are attached per app (not at import time), so every app gets its own.
    route_limits = {
        "auth.login": settings.ratelimit_login,
        "auth.register": settings.ratelimit_register,
    }
    for endpoint, limit in route_limits.items():
        view = app.view_functions[endpoint]
        limited = limiter.limit(limit, key_func=client_address)(view)
        app.view_functions[endpoint] = limited  # type: ignore[assignment]
    return limiter


def _write_headers(limiter: Limiter) -> Any:
    """An after-request hook writing RateLimit-* (and Retry-After on 429) for the limit applied."""

    def write(response: Response) -> Response:
        """Write the headers of the limit that applied (a login-failure limit if one did)."""
        window = g.pop("rate_window", None) or _current_window(limiter)
        if window is None:
            return response
        amount, remaining, reset_at = window
        reset = max(0, math.ceil(reset_at - time.time()))
        response.headers["RateLimit-Limit"] = str(amount)
        response.headers["RateLimit-Remaining"] = str(max(0, remaining))
        response.headers["RateLimit-Reset"] = str(reset)
        if response.status_code == 429:
            response.headers["Retry-After"] = str(max(1, reset))
        return response

    return write


def _current_window(limiter: Limiter) -> tuple[int, int, float] | None:
    """(limit, remaining, reset epoch) of the limit flask-limiter applied, if any."""
    try:
        current = limiter.current_limit
        if current is None:
            return None
        reset_at, remaining = current.window
        return current.limit.amount, remaining, float(reset_at)
    except Exception:  # storage went away mid-request: answer without headers, not with a 500
        log.warning("could not read rate-limit window", exc_info=True)
        return None


class LoginFailureGuard:
    """Counts failed logins per (email, address) tightly and per email loosely.

    Only failures count, so an account's owner can still log in from their own address while
    someone elsewhere guesses its password.
    """

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.ratelimit_enabled
        self.pair_limit: RateLimitItem = parse(settings.ratelimit_login_failures)
        self.email_limit: RateLimitItem = parse(settings.ratelimit_login_email)
        primary: Storage = storage_from_string(  # type: ignore[assignment]
            _storage_uri(settings), **(REDIS_TIMEOUTS if settings.redis_url else {})
        )
        self.primary = FixedWindowRateLimiter(primary)
        self.fallback = FixedWindowRateLimiter(MemoryStorage())
        self.primary_down_until = 0.0  # 0: believed up; else when to try it again

    def _run(self, action: str, *args: Any) -> Any:
        """Call the strategy on the primary storage, or on memory while it is down.

        Like flask-limiter, a dead primary is retried only now and then, so an outage costs
        one warning and no per-request timeouts.
        """
        if self.primary_down_until <= time.monotonic():
            try:
                result = getattr(self.primary, action)(*args)
            except Exception:
                if self.primary_down_until == 0:
                    log.warning("login-failure storage unreachable; counting in memory")
                self.primary_down_until = time.monotonic() + RETRY_PRIMARY_SECONDS
            else:
                if self.primary_down_until:
                    log.info("login-failure storage reachable again")
                self.primary_down_until = 0.0
                return result
        return getattr(self.fallback, action)(*args)

    def _checks(self, email: str) -> list[tuple[RateLimitItem, tuple[str, ...]]]:
        """The (limit, identifiers) pairs that apply to this attempt."""
        address = client_address()
        return [
            (self.pair_limit, ("login-failures", email, address)),
            (self.email_limit, ("login-failures-email", email)),
        ]

    def check(self, email: str) -> None:
        """429 when this email (from this address, or at all) has failed too often."""
        if not self.enabled:
            return
        for limit, ids in self._checks(email):
            if not self._run("test", limit, *ids):
                reset_at, remaining = self._run("get_window_stats", limit, *ids)
                g.rate_window = (limit.amount, remaining, reset_at)
                raise ApiError(429, "rate_limited", "Too many failed logins; try again later.")

    def record_failure(self, email: str) -> None:
        """Count one failed login against every limit."""
        if not self.enabled:
            return
        for limit, ids in self._checks(email):
            self._run("hit", limit, *ids)
