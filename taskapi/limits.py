"""Rate limits: request budgets and password-check budgets, one counter each, one round trip.

Every budget is a fixed-window counter, kept in Redis when ``TASKAPI_REDIS_URL`` is set (so
every worker and instance shares it) and in process memory otherwise. One Lua script
increments a counter and returns its count and time to live together, so a request's budget
costs one Redis round trip and its ``RateLimit-*`` headers come from that answer. (This is
why flask-limiter is not used: its check and the window for the headers took three round
trips; the ``limits`` library underneath still parses the notation and keeps the in-memory
counters.) When Redis stops answering, counting falls back to memory with one warning, and
Redis is tried again every few seconds.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis
from flask import Flask, Response, g, request
from limits import RateLimitItem, parse, parse_many
from limits.storage import MemoryStorage

from taskapi.errors import ApiError, InvalidCredentials, WrongPassword
from taskapi.security import credentials
from taskapi.settings import Settings

log = logging.getLogger("taskapi.limits")
EXEMPT_BLUEPRINTS = ("health", "docs", "metrics")
RETRY_REDIS_SECONDS = 5.0
# Fail fast when Redis hangs, so the in-memory fallback takes over within a second.
REDIS_TIMEOUT_SECONDS = 0.5
KEY_PREFIX = "LIMITS:"
# Add ARGV[2] to the counter; start its window (ARGV[1] ms) when it has none; answer the
# count and the milliseconds left, in one round trip.
COUNT_SCRIPT = """
local count = redis.call('INCRBY', KEYS[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
    ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""


class Counters:
    """Fixed-window counters on Redis, or in memory while Redis is unset or unreachable."""

    def __init__(self, redis_url: str | None) -> None:
        self.memory = MemoryStorage()
        self.redis = (
            redis.Redis.from_url(
                redis_url,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            )
            if redis_url
            else None
        )
        self.script = self.redis.register_script(COUNT_SCRIPT) if self.redis else None
        self.redis_down_until = 0.0  # 0: believed up; else when to try it again
        # Told True when counting moves to memory, False when it is back on Redis (metrics).
        self.on_fallback: Callable[[bool], None] = lambda _in_memory: None

    def add(self, limit: RateLimitItem, ids: tuple[str, ...], amount: int = 1) -> tuple[int, float]:
        """Add ``amount`` to a budget's counter: (count now, epoch when its window ends)."""
        key, expiry = limit.key_for(*ids), limit.get_expiry()
        if self.script is not None and self.redis_down_until <= time.monotonic():
            try:
                count, ttl_ms = self.script(keys=[KEY_PREFIX + key], args=[expiry * 1000, amount])
            except redis.RedisError:
                if self.redis_down_until == 0:
                    log.warning("Redis unreachable; counting rate limits in memory")
                    self.on_fallback(True)
                self.redis_down_until = time.monotonic() + RETRY_REDIS_SECONDS
            else:
                if self.redis_down_until:
                    log.info("Redis reachable again; counting rate limits there")
                    self.on_fallback(False)
                self.redis_down_until = 0.0
                return int(count), time.time() + int(ttl_ms) / 1000
        count = self.memory.incr(key, expiry, amount)
        return count, self.memory.get_expiry(key)

    def redis_answers(self) -> bool:
        """Readiness: whether Redis answers a PING now."""
        if self.redis is None:
            return False
        try:
            return bool(self.redis.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        """Drop the Redis connections (tests, shutdown)."""
        if self.redis is not None:
            self.redis.connection_pool.disconnect()


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
    """Preflights, health checks and the documentation are never limited; neither are
    answers decided before the limiter (an unknown route or method)."""
    return (
        request.routing_exception is not None
        or request.method == "OPTIONS"
        or request.blueprint in EXEMPT_BLUEPRINTS
    )


def install_request_budgets(app: Flask, settings: Settings, counters: Counters) -> None:
    """Count every limited request: per caller everywhere, and per address on login and
    register. Register after the body-size hook, so that 413 ranks before 429."""
    everywhere = parse_many(settings.ratelimit_default)
    per_route = {
        "auth.login": parse_many(settings.ratelimit_login),
        "auth.register": parse_many(settings.ratelimit_register),
        # Emailed-token routes: a token has 256 bits, but guessing still costs us lookups.
        "account.request_password_reset": parse_many(settings.ratelimit_password_reset_address),
        "account.confirm_password_reset": parse_many(settings.ratelimit_login),
        "account.verify_email": parse_many(settings.ratelimit_login),
    }

    def spend() -> None:
        """Spend one unit of each budget that applies; 429 when one is over."""
        if _is_exempt():
            return
        budgets = [(limit, ("taskapi", caller_key())) for limit in everywhere]
        route = request.endpoint or ""
        budgets += [(limit, (route, client_address())) for limit in per_route.get(route, ())]
        windows = []
        for limit, ids in budgets:
            count, reset_at = counters.add(limit, ids)
            windows.append((limit.amount, limit.amount - count, reset_at))
        tightest = min(windows, key=lambda window: window[1])
        g.rate_window = tightest
        if tightest[1] < 0:
            raise ApiError(429, "rate_limited", "Too many requests; slow down.")

    if settings.ratelimit_enabled:
        app.before_request(spend)
    app.after_request(write_rate_headers)


def write_rate_headers(response: Response) -> Response:
    """RateLimit-* (and Retry-After on 429) of the budget that applied, if any did."""
    window = g.pop("rate_window", None)
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


def spend_budget(counters: Counters, limit_text: str, *ids: str, enabled: bool) -> None:
    """Spend one unit of a route's own budget (say, per email); 429 with its headers when it
    is over. Used beside the per-request budgets, for what only the view knows (the email)."""
    if not enabled:
        return
    for limit in parse_many(limit_text):
        count, reset_at = counters.add(limit, ids)
        if count > limit.amount:
            g.rate_window = (limit.amount, limit.amount - count, reset_at)
            raise ApiError(429, "rate_limited", "Too many requests; try again later.")


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

    def __init__(self, settings: Settings, counters: Counters) -> None:
        self.enabled = settings.ratelimit_enabled
        self.pair_limit: RateLimitItem = parse(settings.ratelimit_login_failures)
        self.email_limit: RateLimitItem = parse(settings.ratelimit_login_email)
        self.user_checks: RateLimitItem = parse(settings.ratelimit_password_checks)
        self.address_checks: RateLimitItem = parse(settings.ratelimit_password_checks_address)
        self.counters = counters

    def _take(self, budget: _Budget) -> tuple[int, float]:
        """Reserve one unit of ``budget`` in one atomic increment: (count, window end)."""
        return self.counters.add(budget.limit, budget.ids)

    def _give_back(self, *budgets: _Budget) -> None:
        """Return one reserved unit of each budget (a correct password, or a refusal)."""
        for budget in budgets:
            self.counters.add(budget.limit, budget.ids, amount=-1)

    @staticmethod
    def _refuse(budget: _Budget, count: int, reset_at: float, message: str) -> ApiError:
        """429 with the headers of the budget that refused."""
        g.rate_window = (budget.limit.amount, budget.limit.amount - count, reset_at)
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
            count, reset_at = self._take(budget)
            if count > budget.limit.amount:
                raise self._refuse(budget, count, reset_at, "Too many password checks.")
        pair = _Budget(self.pair_limit, ("login-failures", email, address))
        per_email = _Budget(self.email_limit, ("login-failures-email", email))
        message = "Too many failed attempts; try again later."
        pair_count, pair_reset = self._take(pair)
        if pair_count > pair.limit.amount:
            self._give_back(pair)
            raise self._refuse(pair, pair_count, pair_reset, message)
        # Past the per-email budget, only an address with no failure for this email (this
        # attempt is its first) may try: the owner at home is never locked out by strangers.
        email_count, email_reset = self._take(per_email)
        if email_count > per_email.limit.amount and pair_count > 1:
            self._give_back(pair, per_email)
            raise self._refuse(per_email, email_count, email_reset, message)
        try:
            yield
        except (InvalidCredentials, WrongPassword):
            raise  # a wrong password keeps its failure slots
        except BaseException:
            self._give_back(pair, per_email)
            raise
        self._give_back(pair, per_email)
