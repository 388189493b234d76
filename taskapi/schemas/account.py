"""Request and response models of password reset, email verification and change of email."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from taskapi.schemas.auth import AnyPassword, Email, NewPassword
from taskapi.schemas.common import PublicModel, RequestModel

# An emailed token is 43 URL-safe characters; the bound only keeps junk out of the lookup.
EmailedToken = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]


class PasswordResetBody(RequestModel):
    """``POST /auth/password-reset``."""

    email: Email


class PasswordResetConfirmBody(RequestModel):
    """``POST /auth/password-reset/confirm``."""

    token: EmailedToken = Field(description="The token from the reset link")
    new_password: NewPassword


class VerifyEmailBody(RequestModel):
    """``POST /auth/verify-email``."""

    token: EmailedToken = Field(
        description="The token from a verification link, or from a change-of-email confirmation"
    )


class EmailChangeBody(RequestModel):
    """``POST /auth/email``."""

    new_email: Email
    password: AnyPassword


class Accepted(PublicModel):
    """A request that was taken; what follows arrives by email."""

    status: Literal["accepted"] = "accepted"
    message: str


class ResendAnswer(PublicModel):
    """Answer of ``POST /auth/verify-email/resend``."""

    status: Literal["sent", "already_verified"]
