"""The password policy: the contract's length bounds plus a short list of common passwords."""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def common_passwords() -> frozenset[str]:
    """The most common passwords, shipped in the package, lower-cased."""
    text = files("taskapi").joinpath("data/common_passwords.txt").read_text("utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip())


def check_password_policy(password: str) -> str:
    """Reject passwords every attacker tries first."""
    if password.lower() in common_passwords():
        raise ValueError("is one of the most common passwords; choose another")
    return password
