"""Password hashing: bcrypt over a SHA-256 pre-hash so that every character counts.

bcrypt costs about 0.25 s of CPU at cost 12. Under gunicorn's gevent worker (``taskapi
serve``) every request shares one OS thread, so bcrypt runs in gevent's thread pool (sized by
``TASKAPI_THREADS``) and never on the event loop; elsewhere (tests, other servers) it runs in
the calling thread. bcrypt releases the GIL, so pool threads hash in parallel.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sys
from collections.abc import Callable
from functools import cache
from typing import TypeVar

import bcrypt

T = TypeVar("T")


def _off_the_event_loop(function: Callable[..., T], *args: object) -> T:
    """Run ``function`` in gevent's thread pool when gevent has patched this process.

    ``function`` must not raise: gevent's pool prints a traceback for a task that does.
    """
    monkey = sys.modules.get("gevent.monkey")  # never import gevent just to ask
    if monkey is None or not monkey.is_module_patched("threading"):
        return function(*args)
    import gevent

    return gevent.get_hub().threadpool.apply(_at_low_priority, (function, *args))  # type: ignore[no-any-return]


# A pool thread hashing at niceness 10 gets about a tenth of the CPU share of the event loop,
# so in a login storm the logins queue for the CPU while reads keep their pace.
BCRYPT_NICENESS = 10


def _at_low_priority(function: Callable[..., T], *args: object) -> T:
    """Run ``function`` in this pool thread at a lower CPU priority.

    On Linux the nice value is per thread, and ``setpriority(PRIO_PROCESS, 0)`` sets the
    calling thread's; elsewhere, or without permission, the priority simply stays.
    """
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) < BCRYPT_NICENESS:
            os.setpriority(os.PRIO_PROCESS, 0, BCRYPT_NICENESS)
    except (AttributeError, OSError):
        pass
    return function(*args)


def _prehash(password: str) -> bytes:
    """SHA-256 then base64: 44 bytes, so bcrypt's 72-byte limit never drops a character."""
    digest = hashlib.sha256(password.encode("utf-8", "surrogatepass")).digest()
    return base64.b64encode(digest)


def _hash(prehashed: bytes, rounds: int) -> str:
    """bcrypt itself (the slow part)."""
    return bcrypt.hashpw(prehashed, bcrypt.gensalt(rounds)).decode("ascii")


def _check(prehashed: bytes, password_hash: bytes) -> bool:
    """bcrypt's check (the slow part); a malformed stored hash simply does not verify."""
    try:
        return bcrypt.checkpw(prehashed, password_hash)
    except ValueError:
        return False


def hash_password(password: str, *, rounds: int) -> str:
    """A bcrypt hash of the pre-hashed password."""
    return _off_the_event_loop(_hash, _prehash(password), rounds)


def verify_password(password: str, password_hash: str) -> bool:
    """Check a password; a malformed stored hash simply does not verify."""
    try:
        stored = password_hash.encode("ascii")
    except UnicodeEncodeError:
        return False
    return _off_the_event_loop(_check, _prehash(password), stored)


@cache
def dummy_hash(rounds: int) -> str:
    """A hash to check unknown emails against, so login timing reveals nothing."""
    return hash_password("not-a-real-password", rounds=rounds)
