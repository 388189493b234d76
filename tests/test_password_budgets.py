"""Password guessing and bcrypt work are bounded everywhere a password is checked.

Login and the re-checks of a signed-in user (``POST /auth/password``, ``DELETE /auth/me``)
share the failure budgets; bcrypt work is bounded per address and per user; the owner is
never locked out by strangers; budgets are reserved atomically; IPv6 counts per /64; and the
limiter keys on exactly the caller the guard accepts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import PASSWORD
from tests.support import assert_429
from tests.test_limits import AUTH, _credentials, at, limited_app, login, window

NEW_PASSWORD = "a brand new unguessable passphrase"
WRONG = "wrong password guess"


def _signed_in(client: FlaskClient, address: str) -> tuple[str, dict[str, str]]:
    """A fresh user logged in from ``address``: (email, Authorization header)."""
    email, password = _credentials(client, address)
    answer = login(client, email, password, address)
    assert answer.status_code == 200, answer.json
    return email, {"Authorization": f"Bearer {answer.json['access_token']}"}


def _change_password(
    client: FlaskClient, headers: dict[str, str], current: str, address: str
) -> Any:
    """POST /auth/password from ``address``."""
    body = {"current_password": current, "new_password": NEW_PASSWORD}
    return client.post(f"{AUTH}/password", json=body, headers=headers, **at(address))


def _delete_me(client: FlaskClient, headers: dict[str, str], password: str, address: str) -> Any:
    """DELETE /auth/me from ``address``."""
    return client.delete(f"{AUTH}/me", json={"password": password}, headers=headers, **at(address))


# --- item 3: re-checks count like logins ----------------------------------------------------


def test_wrong_current_passwords_spend_the_login_failure_budget(
    make_app: Callable[..., Flask],
) -> None:
    """A stolen access token cannot guess the password: five wrong re-checks from one address
    spend that pair's budget, for re-checks and logins alike."""
    client = limited_app(make_app, ratelimit_login_failures="5/15 minutes")
    email, headers = _signed_in(client, "10.20.0.1")
    for _ in range(5):
        wrong = _change_password(client, headers, WRONG, "10.20.0.2")
        assert wrong.status_code == 403 and wrong.json["code"] == "invalid_credentials"
    assert_429(_change_password(client, headers, PASSWORD, "10.20.0.2"), max_wait=15 * 60)
    assert_429(login(client, email, PASSWORD, "10.20.0.2"), max_wait=15 * 60)
    assert _change_password(client, headers, PASSWORD, "10.20.0.3").status_code == 204


def test_wrong_delete_passwords_count_with_failed_logins(make_app: Callable[..., Flask]) -> None:
    """Failed logins and a wrong DELETE /auth/me password add up in one (email, address) budget."""
    client = limited_app(make_app, ratelimit_login_failures="3/15 minutes")
    email, headers = _signed_in(client, "10.21.0.1")
    for _ in range(2):
        assert login(client, email, WRONG, "10.21.0.2").status_code == 401
    assert _delete_me(client, headers, WRONG, "10.21.0.2").status_code == 403
    assert_429(_delete_me(client, headers, PASSWORD, "10.21.0.2"), max_wait=15 * 60)
    assert client.get(f"{AUTH}/me", headers=headers, **at("10.21.0.2")).status_code == 200


def test_a_correct_re_check_gives_its_slot_back(make_app: Callable[..., Flask]) -> None:
    """Only failures count: a user who knows the password is never slowed down by re-checks."""
    client = limited_app(make_app, ratelimit_login_failures="2/15 minutes")
    _email, headers = _signed_in(client, "10.22.0.1")
    assert _change_password(client, headers, WRONG, "10.22.0.1").status_code == 403
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    answer = client.post(f"{AUTH}/password", json=body, headers=headers, **at("10.22.0.1"))
    assert answer.status_code == 204
    back = {"current_password": NEW_PASSWORD, "new_password": PASSWORD}
    answer = client.post(f"{AUTH}/password", json=back, headers=headers, **at("10.22.0.1"))
    assert answer.status_code == 204


# --- item 4: bcrypt work per user and per address -------------------------------------------


def test_password_checks_are_bounded_per_user(make_app: Callable[..., Flask]) -> None:
    """TASKAPI_RATELIMIT_PASSWORD_CHECKS bounds one signed-in user's bcrypt work, from any
    address, while other users' logins go on."""
    client = limited_app(make_app, ratelimit_password_checks="3/minute")
    _email, headers = _signed_in(client, "10.23.0.1")
    for address in ("10.23.0.2", "10.23.0.3", "10.23.0.4"):
        assert _change_password(client, headers, WRONG, address).status_code == 403
    refused = _change_password(client, headers, WRONG, "10.23.0.5")
    assert_429(refused, max_wait=60)
    assert window(refused)[:2] == (3, 0)
    other_email, other_password = _credentials(client, "10.23.0.6")
    assert login(client, other_email, other_password, "10.23.0.6").status_code == 200


def test_password_checks_are_bounded_per_address(make_app: Callable[..., Flask]) -> None:
    """TASKAPI_RATELIMIT_PASSWORD_CHECKS_ADDRESS bounds bcrypt work from one address across
    every account it tries."""
    client = limited_app(make_app, ratelimit_password_checks_address="3/minute")
    emails = [_credentials(client, "10.24.0.1")[0] for _ in range(4)]
    for email in emails[:3]:
        assert login(client, email, WRONG, "10.24.0.2").status_code == 401
    assert_429(login(client, emails[3], PASSWORD, "10.24.0.2"), max_wait=60)
    assert login(client, emails[3], PASSWORD, "10.24.0.3").status_code == 200


# --- item 5: the owner is not locked out by strangers ---------------------------------------


def test_owner_logs_in_from_a_clean_address_after_strangers_spent_the_email_budget(
    make_app: Callable[..., Flask],
) -> None:
    """Fifty failures from ten addresses do not lock the owner out of a fresh address."""
    client = limited_app(
        make_app, ratelimit_login_failures="5/15 minutes", ratelimit_login_email="50/hour"
    )
    email, password = _credentials(client, "10.25.0.1")
    for host in range(10):
        for _ in range(5):
            assert login(client, email, WRONG, f"10.25.1.{host}").status_code == 401
    assert_429(login(client, email, WRONG, "10.25.1.0"), max_wait=3600)
    assert login(client, email, password, "10.25.2.1").status_code == 200
    assert login(client, email, password, "10.25.2.1").status_code == 200


def test_a_clean_address_gets_one_guess_past_the_email_budget(
    make_app: Callable[..., Flask],
) -> None:
    """Past the per-email budget a fresh address may try once; after a failure it is refused."""
    client = limited_app(
        make_app, ratelimit_login_failures="5/15 minutes", ratelimit_login_email="2/hour"
    )
    email, _password = _credentials(client, "10.26.0.1")
    for address in ("10.26.1.1", "10.26.1.2"):
        assert login(client, email, WRONG, address).status_code == 401
    assert login(client, email, WRONG, "10.26.1.3").status_code == 401
    assert_429(login(client, email, WRONG, "10.26.1.3"), max_wait=3600)


# --- item 6: atomic reservation -------------------------------------------------------------


def test_concurrent_wrong_passwords_cannot_overrun_the_budget(
    make_app: Callable[..., Flask],
) -> None:
    """Ten simultaneous wrong passwords for one pair with a budget of 5: exactly 5 are checked.

    bcrypt at cost 10 keeps each check slow enough that all ten overlap.
    """
    app = make_app(
        ratelimit_enabled=True, bcrypt_rounds=10, ratelimit_login_failures="5/15 minutes",
        ratelimit_login="1000/minute", ratelimit_login_email="1000/hour",
        ratelimit_password_checks_address="1000/minute", ratelimit_default="1000/minute",
    )  # fmt: skip
    email, _password = _credentials(app.test_client(), "10.27.0.1")
    barrier = threading.Barrier(10)
    statuses: list[int] = []

    def guess() -> None:
        client = app.test_client()
        barrier.wait()
        statuses.append(login(client, email, WRONG, "10.27.0.2").status_code)

    threads = [threading.Thread(target=guess) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [401] * 5 + [429] * 5


# --- item 7 and 8: who is counted -----------------------------------------------------------


def test_a_header_the_guard_refuses_is_counted_per_address(
    make_app: Callable[..., Flask],
) -> None:
    """``Basic x, Bearer <jwt>`` is not a Bearer credential: 401, and counted per address,
    so it neither spends nor escapes the user's budget."""
    client = limited_app(make_app, ratelimit_default="2/minute")
    _email, headers = _signed_in(client, "10.28.0.1")
    mixed = {"Authorization": "Basic eDp5, " + headers["Authorization"]}
    for _ in range(2):
        refused = client.get(f"{AUTH}/me", headers=mixed, **at("10.28.0.2"))
        assert refused.status_code == 401 and refused.json["code"] == "unauthorized"
    assert_429(client.get(f"{AUTH}/me", headers=mixed, **at("10.28.0.2")), max_wait=60)
    assert client.get(f"{AUTH}/me", headers=headers, **at("10.28.0.2")).status_code == 200


def test_the_accepted_token_is_counted_per_user_whatever_its_scheme_case(
    make_app: Callable[..., Flask],
) -> None:
    """``bearer`` in any case authenticates, and the limiter counts it per user."""
    client = limited_app(make_app, ratelimit_default="2/minute")
    _email, headers = _signed_in(client, "10.29.0.1")
    token = headers["Authorization"].split(" ", 1)[1]
    for scheme in ("bearer", "BEARER"):
        answer = client.get(f"{AUTH}/me", headers={"Authorization": f"{scheme}  {token}"},
                            **at("10.29.0.2"))  # fmt: skip
        assert answer.status_code == 200
    assert_429(client.get(f"{AUTH}/me", headers=headers, **at("10.29.0.3")), max_wait=60)


def test_ipv6_clients_share_a_budget_per_64(make_app: Callable[..., Flask]) -> None:
    """Addresses in one IPv6 /64 are one client; another /64 is another."""
    client = limited_app(make_app, ratelimit_default="2/minute")
    for address in ("2001:db8:1:1::1", "2001:db8:1:1:ffff::2"):
        assert client.get(f"{AUTH}/me", **at(address)).status_code == 401
    assert_429(client.get(f"{AUTH}/me", **at("2001:db8:1:1:abcd::3")), max_wait=60)
    assert client.get(f"{AUTH}/me", **at("2001:db8:1:2::1")).status_code == 401


def test_ipv4_clients_are_counted_per_address(make_app: Callable[..., Flask]) -> None:
    """Neighbouring IPv4 addresses have budgets of their own."""
    client = limited_app(make_app, ratelimit_default="1/minute")
    assert client.get(f"{AUTH}/me", **at("10.30.0.1")).status_code == 401
    assert client.get(f"{AUTH}/me", **at("10.30.0.2")).status_code == 401
    assert_429(client.get(f"{AUTH}/me", **at("10.30.0.1")), max_wait=60)
