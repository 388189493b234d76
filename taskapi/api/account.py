"""Account recovery under ``/api/v1/auth``: password reset, email verification, change of
email. Every link arrives by email, queued in the outbox with the change behind it."""

from __future__ import annotations

import ipaddress
from datetime import timedelta

from flask import Blueprint

from taskapi.api.deps import db_session, settings, state
from taskapi.api.operation import operation
from taskapi.db import release_connection, utcnow
from taskapi.limits import client_address, spend_budget
from taskapi.passwords import hash_password
from taskapi.schemas.account import (
    Accepted,
    EmailChangeBody,
    PasswordResetBody,
    PasswordResetConfirmBody,
    ResendAnswer,
    VerifyEmailBody,
)
from taskapi.security import principal
from taskapi.services import accounts
from taskapi.services import auth as auth_service
from taskapi.services.notices import MailContext

bp = Blueprint("account", __name__, url_prefix="/api/v1/auth")
TAGS = ("account",)
RESET_ACCEPTED = (
    "If an account uses this address, a link to reset its password is on its way. "
    "It works once, for a limited time."
)


def mail_context() -> MailContext:
    """Where links in mail point, from the settings."""
    return MailContext.of(settings())


def network_of_caller() -> str:
    """The caller's network for "new device" notices: an IPv4 /24 or an IPv6 /64, so that a
    phone moving between addresses of one provider is not a new device each time."""
    address = client_address()
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address  # already a /64 network, or unknown
    return str(ipaddress.ip_network((parsed, 24), strict=False))


@bp.post("/password-reset")
@operation(
    "Ask for a password reset link by email",
    tags=TAGS,
    auth=None,
    body=PasswordResetBody,
    ok=(202, Accepted),
    description=(
        "Always 202 with the same body, whether or not the address has an account (and in "
        "about the same time), so it cannot be used to find accounts. The emailed token works "
        "once, expires after TASKAPI_RESET_TOKEN_MINUTES (60), and a newer request replaces "
        "it. Rate limited per address (TASKAPI_RATELIMIT_PASSWORD_RESET_ADDRESS) and per email "
        "(TASKAPI_RATELIMIT_PASSWORD_RESET_EMAIL)."
    ),
)
def request_password_reset(body: PasswordResetBody) -> Accepted:
    """Queue a reset link for the address, if it has an account."""
    config = settings()
    spend_budget(
        state().counters,
        config.ratelimit_password_reset_email,
        "password-reset-email",
        body.email,
        enabled=config.ratelimit_enabled,
    )
    accounts.request_password_reset(
        db_session(),
        email=body.email,
        ctx=mail_context(),
        now=utcnow(),
        lifetime=timedelta(minutes=config.reset_token_minutes),
    )
    return Accepted(message=RESET_ACCEPTED)


@bp.post("/password-reset/confirm")
@operation(
    "Set a new password with a reset token",
    tags=TAGS,
    auth=None,
    body=PasswordResetConfirmBody,
    ok=(204, None),
    errors={400: ("invalid_token",)},
    description=(
        "Applies the password policy, sets the password, ends every session of the user, "
        "marks the email verified and sends a notice. 400 invalid_token for a token that is "
        "unknown, used or expired (one answer for all three)."
    ),
)
def confirm_password_reset(body: PasswordResetConfirmBody) -> None:
    """Check the token, hash the new password outside any transaction, then apply both."""
    db, now = db_session(), utcnow()
    accounts.check_reset_token(db, token=body.token, now=now)
    release_connection(db)  # bcrypt must not hold a pooled connection
    password_hash = hash_password(body.new_password, rounds=settings().bcrypt_rounds)
    accounts.reset_password(
        db, token=body.token, password_hash=password_hash, ctx=mail_context(), now=now
    )


@bp.post("/verify-email")
@operation(
    "Confirm an email address with the emailed token",
    tags=TAGS,
    auth=None,
    body=VerifyEmailBody,
    ok=(204, None),
    errors={400: ("invalid_token",), 409: ("email_taken",)},
    description=(
        "A verification link marks the address verified; a change-of-email link makes its "
        "address the account's (409 email_taken if another account took it meanwhile). "
        "400 invalid_token for a token that is unknown, used or expired."
    ),
)
def verify_email(body: VerifyEmailBody) -> None:
    """Apply a verification or change-of-email token."""
    accounts.verify_email(db_session(), token=body.token, ctx=mail_context(), now=utcnow())


@bp.post("/verify-email/resend")
@operation(
    "Send a new verification link",
    tags=TAGS,
    ok=(202, ResendAnswer),
    description=(
        'Sends a fresh link (older ones stop working): "sent"; nothing when the address is '
        'already verified: "already_verified". Rate limited per user '
        "(TASKAPI_RATELIMIT_VERIFY_RESEND)."
    ),
)
def resend_verification() -> ResendAnswer:
    """Queue a new verification link for the caller."""
    caller, config = principal(), settings()
    spend_budget(
        state().counters,
        config.ratelimit_verify_resend,
        "verify-resend",
        str(caller.user_id),
        enabled=config.ratelimit_enabled,
    )
    sent = accounts.resend_verification(
        db_session(),
        user_id=caller.user_id,
        ctx=mail_context(),
        now=utcnow(),
        lifetime=timedelta(hours=config.verify_token_hours),
    )
    return ResendAnswer(status="sent" if sent else "already_verified")


@bp.post("/email")
@operation(
    "Change the email address (confirmed by the new address)",
    tags=TAGS,
    body=EmailChangeBody,
    ok=(202, Accepted),
    errors={403: ("invalid_credentials",), 409: ("email_taken",)},
    description=(
        "Checks the password (a wrong one is 403 invalid_credentials and counts like a failed "
        "login), sends a confirmation link to new_email and a notice to the current address. "
        "The address changes only when the link is opened (POST /auth/verify-email); 409 "
        "email_taken if the address belongs to an account, now or by then."
    ),
)
def change_email(body: EmailChangeBody) -> Accepted:
    """Check the password, then queue the confirmation and the notice."""
    caller, config, db = principal(), settings(), db_session()
    spend_budget(
        state().counters,
        config.ratelimit_email_change,
        "email-change",
        str(caller.user_id),
        enabled=config.ratelimit_enabled,
    )
    email = auth_service.email_of(db, user_id=caller.user_id)
    with state().password_guard.attempt(email, user_id=str(caller.user_id)):
        auth_service.check_password(db, user_id=caller.user_id, password=body.password)
    accounts.request_email_change(
        db,
        user_id=caller.user_id,
        new_email=body.new_email,
        ctx=mail_context(),
        now=utcnow(),
        lifetime=timedelta(hours=config.verify_token_hours),
    )
    return Accepted(
        message=f"A confirmation link was sent to {body.new_email}; the address changes "
        "when it is opened."
    )
