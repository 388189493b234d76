"""Account recovery by email, end to end through HTTP and a real SMTP server (issue 10):
password reset, verification, change of email, security notices, disabled accounts and the
operator commands."""

from __future__ import annotations

import re
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from taskapi.cli import main
from taskapi.models import AccountToken
from tests.conftest import PASSWORD, TEST_SECRET, User, login, unique_email
from tests.mailbox import (  # smtp_sink_fixture registers the smtp_sink fixture
    SmtpSink,
    deliver,
    mail_settings,
    smtp_sink_fixture,  # noqa: F401
)
from tests.support import (
    AUTH,
    TASKS,
    assert_429,
    assert_error,
    bearer,
    refresh,
    shift_back,
)

NEW_PASSWORD = "a fresh passphrase 42"
LINK = re.compile(r"https?://\S+\?token=([A-Za-z0-9_-]+)")


@pytest.fixture
def mail_app(make_app: Callable[..., Flask], smtp_sink: SmtpSink) -> Flask:
    """An app that sends its mail to the test's SMTP server."""
    return make_app(**mail_settings(smtp_sink), public_url="https://app.example.com")


@pytest.fixture
def http(mail_app: Flask) -> FlaskClient:
    """A client of ``mail_app``."""
    return mail_app.test_client()


@pytest.fixture
def person(http: FlaskClient, make_user: Callable[..., User]) -> User:
    """A registered, logged-in user of ``mail_app``."""
    return make_user("Ana", on=http)


def mail_to(app: Flask, sink: SmtpSink, address: str, subject_word: str) -> EmailMessage:
    """Send the outbox, then the one message to ``address`` whose subject has the word."""
    deliver(app)
    found = [m for m in sink.to(address) if subject_word.lower() in str(m["Subject"]).lower()]
    assert len(found) == 1, [str(m["Subject"]) for m in sink.to(address)]
    return found[0]


def text_of(message: EmailMessage) -> str:
    """The plain-text part."""
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def token_in(message: EmailMessage) -> str:
    """The token of the one link in a message's text."""
    (token,) = LINK.findall(text_of(message))
    return str(token)


def ask_reset(http: FlaskClient, email: str) -> Any:
    """POST /auth/password-reset."""
    return http.post(f"{AUTH}/password-reset", json={"email": email})


def confirm_reset(http: FlaskClient, token: str, password: str = NEW_PASSWORD) -> Any:
    """POST /auth/password-reset/confirm."""
    return http.post(
        f"{AUTH}/password-reset/confirm", json={"token": token, "new_password": password}
    )


def reset_token(app: Flask, sink: SmtpSink, http: FlaskClient, email: str) -> str:
    """Ask for a reset and read the token from the mail."""
    assert ask_reset(http, email).status_code == 202
    return token_in(mail_to(app, sink, email, "reset"))


# --- password reset --------------------------------------------------------------------------


def test_password_reset_end_to_end(
    mail_app: Flask,
    http: FlaskClient,
    person: User,
    smtp_sink: SmtpSink,
) -> None:
    """Request, read the mail, confirm: the old password fails, every session has ended, the
    address is verified, and a notice says the password changed."""
    other_session = login(http, person.email).json
    assert ask_reset(http, person.email).status_code == 202
    mail = mail_to(mail_app, smtp_sink, person.email, "reset")
    assert "https://app.example.com/reset-password?token=" in text_of(mail)
    html = mail.get_body(preferencelist=("html",))
    assert html is not None and "reset-password?token=" in str(html.get_content())
    assert confirm_reset(http, token_in(mail)).status_code == 204
    assert_error(login(http, person.email), 401, "invalid_credentials")
    fresh = login(http, person.email, NEW_PASSWORD)
    assert fresh.status_code == 200
    assert fresh.json["user"]["email_verified"] is True
    for tokens in (person, other_session):
        access = tokens.access_token if isinstance(tokens, User) else tokens["access_token"]
        assert_error(http.get(f"{AUTH}/me", headers=bearer(access)), 401, "token_revoked")
    assert_error(refresh(http, person.refresh_token), 401, "token_revoked")
    notice = mail_to(mail_app, smtp_sink, person.email, "security notice")
    assert "password was changed" in text_of(notice)


def test_reset_token_works_once(
    mail_app: Flask,
    http: FlaskClient,
    person: User,
    smtp_sink: SmtpSink,
) -> None:
    """A used token is 400 invalid_token, like an unknown one."""
    token = reset_token(mail_app, smtp_sink, http, person.email)
    assert confirm_reset(http, token).status_code == 204
    assert_error(confirm_reset(http, token, "yet another passphrase 7"), 400, "invalid_token")
    assert_error(confirm_reset(http, "x" * 43), 400, "invalid_token")
    assert login(http, person.email, NEW_PASSWORD).status_code == 200


def test_reset_token_expires(
    mail_app: Flask,
    http: FlaskClient,
    person: User,
    smtp_sink: SmtpSink,
) -> None:
    """Past TASKAPI_RESET_TOKEN_MINUTES the token is 400 invalid_token; the password stays."""
    token = reset_token(mail_app, smtp_sink, http, person.email)
    shift_back(
        mail_app,
        AccountToken.__table__.c.expires_at,
        timedelta(minutes=61),
        (AccountToken.__table__.c.purpose == "reset")
        & (AccountToken.__table__.c.user_id == uuid.UUID(person.id)),
    )
    assert_error(confirm_reset(http, token), 400, "invalid_token")
    assert login(http, person.email).status_code == 200


def test_a_newer_reset_request_replaces_the_older_token(
    mail_app: Flask,
    http: FlaskClient,
    person: User,
    smtp_sink: SmtpSink,
) -> None:
    """Only the newest link works."""
    first = reset_token(mail_app, smtp_sink, http, person.email)
    smtp_sink.clear()
    second = reset_token(mail_app, smtp_sink, http, person.email)
    assert_error(confirm_reset(http, first), 400, "invalid_token")
    assert confirm_reset(http, second).status_code == 204


def test_reset_applies_the_password_policy(
    mail_app: Flask,
    http: FlaskClient,
    person: User,
    smtp_sink: SmtpSink,
) -> None:
    """A short password is 400 validation_error and leaves the token usable."""
    token = reset_token(mail_app, smtp_sink, http, person.email)
    assert_error(confirm_reset(http, token, "short"), 400, "validation_error")
    assert confirm_reset(http, token).status_code == 204


def test_unknown_email_is_indistinguishable(
    make_app: Callable[..., Flask],
    make_user: Callable[..., User],
    smtp_sink: SmtpSink,
) -> None:
    """Same status and body, no mail, and about the same time (a generous bound)."""
    app = make_app(**mail_settings(smtp_sink))
    http = app.test_client()
    known = make_user(on=http).email
    unknown = unique_email()
    answers = [ask_reset(http, email) for email in (known, unknown)]
    assert [a.status_code for a in answers] == [202, 202]
    assert answers[0].json == answers[1].json
    deliver(app)
    assert smtp_sink.to(unknown) == []

    def median_ms(email: str) -> float:
        samples = []
        for _ in range(15):
            started = time.perf_counter()
            ask_reset(http, email)
            samples.append((time.perf_counter() - started) * 1000)
        return statistics.median(samples)

    known_ms, unknown_ms = median_ms(known), median_ms(unknown)
    assert abs(known_ms - unknown_ms) < max(25.0, 1.0 * min(known_ms, unknown_ms)), (
        known_ms,
        unknown_ms,
    )


def test_reset_requests_are_rate_limited_per_email_and_per_address(
    make_app: Callable[..., Flask],
) -> None:
    """Past the per-email budget that email is 429; past the per-address budget, any email."""
    app = make_app(
        ratelimit_enabled=True,
        ratelimit_password_reset_email="2/hour",
        ratelimit_password_reset_address="4/hour",
    )
    http = app.test_client()
    target = unique_email()
    assert [ask_reset(http, target).status_code for _ in range(2)] == [202, 202]
    assert_429(ask_reset(http, target))
    assert ask_reset(http, unique_email()).status_code == 202
    assert_429(ask_reset(http, unique_email()))


# --- verification ----------------------------------------------------------------------------


def verify(http: FlaskClient, token: str) -> Any:
    """POST /auth/verify-email."""
    return http.post(f"{AUTH}/verify-email", json={"token": token})


def test_registration_sends_a_verification_link(
    mail_app: Flask,
    http: FlaskClient,
    person: User,
    smtp_sink: SmtpSink,
) -> None:
    """The link verifies the address once; the user object says so."""
    assert person.request("GET", f"{AUTH}/me").json["email_verified"] is False
    mail = mail_to(mail_app, smtp_sink, person.email, "confirm your email")
    assert "https://app.example.com/verify-email?token=" in text_of(mail)
    assert verify(http, token_in(mail)).status_code == 204
    assert person.request("GET", f"{AUTH}/me").json["email_verified"] is True
    assert_error(verify(http, token_in(mail)), 400, "invalid_token")


def test_resend_replaces_the_link_and_says_when_already_verified(
    mail_app: Flask,
    http: FlaskClient,
    person: User,
    smtp_sink: SmtpSink,
) -> None:
    """A resend invalidates the first link; once verified, nothing is sent."""
    first = token_in(mail_to(mail_app, smtp_sink, person.email, "confirm your email"))
    smtp_sink.clear()
    resent = person.request("POST", f"{AUTH}/verify-email/resend")
    assert resent.status_code == 202
    assert resent.json == {"status": "sent"}
    second = token_in(mail_to(mail_app, smtp_sink, person.email, "confirm your email"))
    assert_error(verify(http, first), 400, "invalid_token")
    assert verify(http, second).status_code == 204
    again = person.request("POST", f"{AUTH}/verify-email/resend")
    assert again.json == {"status": "already_verified"}
    smtp_sink.clear()
    deliver(mail_app)
    assert smtp_sink.to(person.email) == []


def test_resend_is_rate_limited_per_user(
    make_app: Callable[..., Flask], make_user: Callable[..., User]
) -> None:
    """TASKAPI_RATELIMIT_VERIFY_RESEND bounds the mail one user can cause."""
    http = make_app(ratelimit_enabled=True, ratelimit_verify_resend="2/hour").test_client()
    user = make_user(on=http)
    sent = [user.request("POST", f"{AUTH}/verify-email/resend").status_code for _ in range(2)]
    assert sent == [202, 202]
    assert_429(user.request("POST", f"{AUTH}/verify-email/resend"))


def test_required_verification_blocks_task_writes_only(
    make_app: Callable[..., Flask],
    make_user: Callable[..., User],
    smtp_sink: SmtpSink,
) -> None:
    """With TASKAPI_REQUIRE_VERIFIED_EMAIL an unverified user reads but cannot write."""
    app = make_app(**mail_settings(smtp_sink), require_verified_email=True)
    http = app.test_client()
    user = make_user(on=http)
    assert user.request("GET", TASKS).status_code == 200
    assert_error(user.request("POST", TASKS, json={"title": "x"}), 403, "email_unverified")
    token = token_in(mail_to(app, smtp_sink, user.email, "confirm your email"))
    assert verify(http, token).status_code == 204
    assert user.request("POST", TASKS, json={"title": "x"}).status_code == 201


def test_unverified_users_write_by_default(person: User) -> None:
    """The setting is off by default."""
    assert person.request("POST", TASKS, json={"title": "x"}).status_code == 201


# --- change of email -------------------------------------------------------------------------


def change_email(user: User, new_email: str, password: str = PASSWORD) -> Any:
    """POST /auth/email."""
    return user.request(
        "POST", f"{AUTH}/email", json={"new_email": new_email, "password": password}
    )


def test_change_of_email_happens_when_the_new_address_confirms(
    mail_app: Flask,
    http: FlaskClient,
    person: User,
    smtp_sink: SmtpSink,
) -> None:
    """A confirmation to the new address, notices to the old; login follows the new one."""
    old, new = person.email, unique_email()
    assert change_email(person, new).status_code == 202
    assert person.request("GET", f"{AUTH}/me").json["email"] == old
    assert "asked to change" in text_of(mail_to(mail_app, smtp_sink, old, "security notice"))
    token = token_in(mail_to(mail_app, smtp_sink, new, "new email"))
    assert verify(http, token).status_code == 204
    me = person.request("GET", f"{AUTH}/me").json
    assert (me["email"], me["email_verified"]) == (new, True)
    assert login(http, new).status_code == 200
    assert_error(login(http, old), 401, "invalid_credentials")
    deliver(mail_app)
    changed = [m for m in smtp_sink.to(old) if "is now" in text_of(m)]
    assert len(changed) == 1


def test_abandoned_change_of_email_changes_nothing(
    mail_app: Flask,
    http: FlaskClient,
    person: User,
    smtp_sink: SmtpSink,
) -> None:
    """Never confirmed: the address stays; once expired the link is invalid_token."""
    new = unique_email()
    assert change_email(person, new).status_code == 202
    token = token_in(mail_to(mail_app, smtp_sink, new, "new email"))
    shift_back(
        mail_app,
        AccountToken.__table__.c.expires_at,
        timedelta(hours=49),
        AccountToken.__table__.c.new_email == new,
    )
    assert_error(verify(http, token), 400, "invalid_token")
    assert person.request("GET", f"{AUTH}/me").json["email"] == person.email
    assert_error(login(http, new), 401, "invalid_credentials")


def test_change_of_email_to_an_address_taken_meanwhile_is_409(
    mail_app: Flask,
    http: FlaskClient,
    person: User,
    make_user: Callable[..., User],
    smtp_sink: SmtpSink,
) -> None:
    """Taken now: 409 at once; taken before the confirmation: 409 then, nothing changes."""
    taken = make_user(on=http).email
    assert_error(change_email(person, taken), 409, "email_taken")
    new = unique_email()
    assert change_email(person, new).status_code == 202
    token = token_in(mail_to(mail_app, smtp_sink, new, "new email"))
    registered = http.post(f"{AUTH}/register", json={"email": new, "password": PASSWORD})
    assert registered.status_code == 201
    assert_error(verify(http, token), 409, "email_taken")
    assert person.request("GET", f"{AUTH}/me").json["email"] == person.email


def test_change_of_email_checks_the_password_like_a_login(
    make_app: Callable[..., Flask], make_user: Callable[..., User]
) -> None:
    """A wrong password is 403 invalid_credentials and spends the login failure budget."""
    http = make_app(ratelimit_enabled=True, ratelimit_login_failures="2/15 minutes").test_client()
    user = make_user(on=http)
    for _ in range(2):
        assert_error(
            change_email(user, unique_email(), "wrong password"), 403, "invalid_credentials"
        )
    assert_429(change_email(user, unique_email(), "wrong password"))


# --- notices and disabled accounts -----------------------------------------------------------


def test_a_login_from_a_new_device_sends_a_notice(
    mail_app: Flask,
    http: FlaskClient,
    person: User,
    smtp_sink: SmtpSink,
) -> None:
    """The same browser again: no mail; another browser: one notice naming it."""
    http.post(f"{AUTH}/login", json={"email": person.email, "password": PASSWORD})
    deliver(mail_app)
    assert [m for m in smtp_sink.to(person.email) if "notice" in str(m["Subject"])] == []
    other = http.post(
        f"{AUTH}/login",
        json={"email": person.email, "password": PASSWORD},
        headers={"User-Agent": "OtherBrowser/2.0"},
    )
    assert other.status_code == 200
    notice = mail_to(mail_app, smtp_sink, person.email, "security notice")
    assert "OtherBrowser/2.0" in text_of(notice)


def test_password_change_sends_a_notice(
    mail_app: Flask,
    person: User,
    smtp_sink: SmtpSink,
) -> None:
    """POST /auth/password queues a notice with the change."""
    answer = person.request(
        "POST",
        f"{AUTH}/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert answer.status_code == 204
    assert "password was changed" in text_of(
        mail_to(mail_app, smtp_sink, person.email, "security notice")
    )


# --- operators -------------------------------------------------------------------------------


@pytest.fixture
def operator_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment of ``taskapi`` commands on the tests' database."""
    return {
        "TASKAPI_DATABASE_URL": database_url,
        "TASKAPI_SECRET_KEY": TEST_SECRET,
        "TASKAPI_DATA_DIR": str(tmp_path),
        "TASKAPI_BCRYPT_ROUNDS": "4",
    }


@dataclass(frozen=True)
class Ran:
    """What a command printed, and its exit code."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def operator(operator_env: dict[str, str]) -> Callable[..., Ran]:
    """Run ``taskapi users ...`` against the tests' database, in this process (click's runner:
    the same command line parsing and output as a shell, without a second interpreter)."""

    def run(*args: str, input: str | None = None) -> Ran:
        result = CliRunner().invoke(main, ["users", *args], env=operator_env, input=input)
        return Ran(result.exit_code, result.stdout, result.stderr)

    return run


def test_disabling_fails_tokens_at_once_and_refuses_login(
    http: FlaskClient, person: User, operator: Callable[..., Any]
) -> None:
    """401 account_disabled for the live access token and for a correct login; enable lifts it."""
    done = operator("disable", person.email)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{person.email} disabled"
    assert_error(person.request("GET", f"{AUTH}/me"), 401, "account_disabled")
    assert_error(refresh(http, person.refresh_token), 401, "account_disabled")
    assert_error(login(http, person.email), 401, "account_disabled")
    assert_error(login(http, person.email, "wrong password"), 401, "invalid_credentials")
    assert operator("enable", person.email).stdout.strip() == f"{person.email} enabled"
    assert login(http, person.email).status_code == 200


def test_operator_commands(
    http: FlaskClient, make_user: Callable[..., User], operator: Callable[..., Any]
) -> None:
    """list, show, verify, set-password (stdin) and delete each print one line."""
    user = make_user(on=http)
    listed = operator("list", "--email", user.email)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [listed.stdout.strip()]
    assert user.email in listed.stdout
    shown = operator("show", user.id)
    assert "unverified" in shown.stdout and "sessions 1" in shown.stdout
    assert operator("verify", user.email).stdout.strip() == f"{user.email} verified"
    assert "  verified" in operator("show", user.email).stdout
    changed = operator("set-password", user.email, input=NEW_PASSWORD + "\n")
    assert changed.stdout.strip() == f"password set for {user.email}; every session ended"
    assert_error(user.request("GET", f"{AUTH}/me"), 401, "token_revoked")
    assert login(http, user.email, NEW_PASSWORD).status_code == 200
    weak = operator("set-password", user.email, input="short\n")
    assert (weak.returncode, weak.stderr.strip()) == (
        2,
        "taskapi: the password must be 8 to 128 characters",
    )
    assert operator("delete", user.email, "--yes").stdout.strip() == f"{user.email} deleted"
    assert_error(login(http, user.email, NEW_PASSWORD), 401, "invalid_credentials")
    missing = operator("show", "nobody@example.com")
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr.strip() == "taskapi: no user 'nobody@example.com'"
