"""Rate limits: flask-limiter for request budgets, plus password-check budgets.

Budgets are shared by every worker and instance through Redis when ``TASKAPI_REDIS_URL`` is
set, and kept in process memory otherwise. When Redis stops answering, flask-limiter falls
back to memory (one warning) and returns to Redis when it is back. The contract's
``RateLimit-*`` headers are written here, not by the library, whose reset is an epoch time.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask, Response, g, request
from flask_limiter import Limiter
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from taskapi.errors import ApiError, InvalidCredentials, WrongPassword
from taskapi.security import credentials
from taskapi.settings import Settings

log = logging.getLogger("taskapi.limits")
T = TypeVar("T")
EXEMPT_BLUEPRINTS = ("health", "docs")
RETRY_PRIMARY_SECONDS = 5.0
# Fail fast when Redis hangs, so the in-memory fallback takes over within a second.
REDIS_TIMEOUTS: dict[str, Any] = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}


def client_address() -> str:
    """The client's address for budgets: IPv4 as is, IPv6 as its /64 network.

    One IPv6 subscriber usually holds a whole /64, so counting single IPv6 addresses would
    give an attacker 2^64 fresh budgets. ProxyFix has already applied trusted hops.
    """
    address = request.remote_addr or "unknown"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:  # ::ffff:192.0.2.1 is an IPv4 client
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


def caller_key() -> str:
    """The request's budget: the user whose token the guard will check, else the address.

    The credentials were read once, before the limiter, by the same code the guard uses.
    """
    user = credentials().user_key
    return f"user:{user}" if user else f"addr:{client_address()}"


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
        caller_key,
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


@dataclass(frozen=True)
class _Budget:
    """One counter: its limit and the identifiers that name it."""

    limit: RateLimitItem
    ids: tuple[str, ...]


class PasswordGuard:
    """Budgets for every password check: login, and re-checks by signed-in users.

    Work budgets bound bcrypt per address and per signed-in user, so one client flooding
    password checks cannot starve everyone's logins. Failure budgets slow guessing: per
    (email, address) tightly, per email loosely. A slot is reserved *before* the check, in one
    atomic increment, so concurrent guesses cannot all slip under a budget; a correct
    password gives its slot back. Past the per-email budget, only an address with no failure
    for that email may still try, so strangers cannot lock the owner out.
    """

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.ratelimit_enabled
        self.pair_limit: RateLimitItem = parse(settings.ratelimit_login_failures)
        self.email_limit: RateLimitItem = parse(settings.ratelimit_login_email)
        self.user_checks: RateLimitItem = parse(settings.ratelimit_password_checks)
        self.address_checks: RateLimitItem = parse(settings.ratelimit_password_checks_address)
        primary: Storage = storage_from_string(  # type: ignore[assignment]
            _storage_uri(settings), **(REDIS_TIMEOUTS if settings.redis_url else {})
        )
        self.primary = FixedWindowRateLimiter(primary)
        self.fallback = FixedWindowRateLimiter(MemoryStorage())
        self.primary_down_until = 0.0  # 0: believed up; else when to try it again

    def _run(self, call: Callable[[FixedWindowRateLimiter], T]) -> T:
        """Run ``call`` on the primary storage, or on memory while it is down.

        Like flask-limiter, a dead primary is retried only now and then, so an outage costs
        one warning and no per-request timeouts.
        """
        if self.primary_down_until <= time.monotonic():
            try:
                result = call(self.primary)
            except Exception:
                if self.primary_down_until == 0:
                    log.warning("password-check storage unreachable; counting in memory")
                self.primary_down_until = time.monotonic() + RETRY_PRIMARY_SECONDS
            else:
                if self.primary_down_until:
                    log.info("password-check storage reachable again")
                self.primary_down_until = 0.0
                return result
        return call(self.fallback)

    def _take(self, budget: _Budget) -> int:
        """Reserve one unit of ``budget`` in one atomic increment; the count after it."""
        key, expiry = budget.limit.key_for(*budget.ids), budget.limit.get_expiry()
        return int(self._run(lambda strategy: strategy.storage.incr(key, expiry)))

    def _give_back(self, *budgets: _Budget) -> None:
        """Return one reserved unit of each budget (a correct password, or a refusal)."""
        for budget in budgets:
            key, expiry = budget.limit.key_for(*budget.ids), budget.limit.get_expiry()
            self._run(lambda strategy: strategy.storage.incr(key, expiry, amount=-1))  # noqa: B023

    def _refuse(self, budget: _Budget, message: str) -> ApiError:
        """429 with the headers of the budget that refused."""
        reset_at, remaining = self._run(
            lambda strategy: strategy.get_window_stats(budget.limit, *budget.ids)
        )
        g.rate_window = (budget.limit.amount, remaining, reset_at)
        return ApiError(429, "rate_limited", message)

    @contextmanager
    def attempt(self, email: str, *, user_id: str | None = None) -> Iterator[None]:
        """Guard one password check for ``email`` (by signed-in ``user_id``, if a re-check).

        A wrong password (``InvalidCredentials``/``WrongPassword``) keeps its failure slots;
        anything else, a success included, gives them back.
        """
        if not self.enabled:
            yield
            return
        address = client_address()
        work = [_Budget(self.address_checks, ("password-checks-address", address))]
        if user_id is not None:
            work.append(_Budget(self.user_checks, ("password-checks-user", user_id)))
        for budget in work:
            if self._take(budget) > budget.limit.amount:
                raise self._refuse(budget, "Too many password checks; try again later.")
        pair = _Budget(self.pair_limit, ("login-failures", email, address))
        per_email = _Budget(self.email_limit, ("login-failures-email", email))
        message = "Too many failed attempts; try again later."
        pair_count = self._take(pair)
        if pair_count > pair.limit.amount:
            self._give_back(pair)
            raise self._refuse(pair, message)
        # Past the per-email budget, only an address with no failure for this email (this
        # attempt is its first) may try: the owner at home is never locked out by strangers.
        if self._take(per_email) > per_email.limit.amount and pair_count > 1:
            self._give_back(pair, per_email)
            raise self._refuse(per_email, message)
        try:
            yield
        except (InvalidCredentials, WrongPassword):
            raise  # a wrong password keeps its failure slots
        except BaseException:
            self._give_back(pair, per_email)
            raise
        self._give_back(pair, per_email)
