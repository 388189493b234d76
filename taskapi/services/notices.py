"""The words of every email: account links and security notices, as text and HTML.

Pure functions from facts to a :class:`Message`; the outbox sends them. Links point at the
SPA (``TASKAPI_PUBLIC_URL`` plus a path), which reads the token and calls the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from urllib.parse import urlencode

from taskapi.services.outbox import Message
from taskapi.settings import Settings


@dataclass(frozen=True)
class MailContext:
    """What every message needs to know of the deployment."""

    product: str
    public_url: str
    reset_path: str
    verify_path: str

    @classmethod
    def of(cls, settings: Settings) -> MailContext:
        """The context a deployment's settings describe."""
        return cls(
            product=settings.product_name,
            public_url=settings.public_url,
            reset_path=settings.reset_path,
            verify_path=settings.verify_path,
        )

    def link(self, path: str, token: str) -> str:
        """An absolute link into the SPA carrying ``token`` in its query."""
        return f"{self.public_url}{path}?{urlencode({'token': token})}"


def _message(
    kind: str, to: str, subject: str, lines: list[str], link: str | None = None
) -> Message:
    """A message with a text part and an HTML part saying the same thing."""
    text = "\n\n".join([*lines, *([link] if link else [])]) + "\n"
    paragraphs = "".join(f"<p>{escape(line)}</p>" for line in lines)
    if link:
        paragraphs += f'<p><a href="{escape(link)}">{escape(link)}</a></p>'
    html = f"<!doctype html><html><body>{paragraphs}</body></html>"
    return Message(kind=kind, recipient=to, subject=subject, text=text, html=html)


def password_reset(ctx: MailContext, to: str, token: str, minutes: int) -> Message:
    """The reset link."""
    return _message(
        "password_reset",
        to,
        f"Reset your {ctx.product} password",
        [
            f"Someone asked to reset the password of your {ctx.product} account.",
            f"Open this link within {minutes} minutes to choose a new password. "
            "If it was not you, ignore this message; your password stays as it is.",
        ],
        ctx.link(ctx.reset_path, token),
    )


def verify_email(ctx: MailContext, to: str, token: str, hours: int) -> Message:
    """The link that proves the address belongs to the account holder."""
    return _message(
        "verify_email",
        to,
        f"Confirm your email address for {ctx.product}",
        [f"Open this link within {hours} hours to confirm this address for {ctx.product}."],
        ctx.link(ctx.verify_path, token),
    )


def confirm_new_email(ctx: MailContext, to: str, token: str, hours: int) -> Message:
    """Sent to the new address of a change of email: the change happens when it is opened."""
    return _message(
        "email_change_confirm",
        to,
        f"Confirm your new email address for {ctx.product}",
        [
            f"Your {ctx.product} account asked to use this address from now on.",
            f"Open this link within {hours} hours to confirm it. Until then nothing changes.",
        ],
        ctx.link(ctx.verify_path, token),
    )


def notice(ctx: MailContext, kind: str, to: str, what: str) -> Message:
    """A short security notice: something changed that the account holder should know of."""
    return _message(
        kind,
        to,
        f"Security notice from {ctx.product}",
        [what, f"If this was not you, reset your password and contact the {ctx.product} operator."],
    )


def email_change_requested(ctx: MailContext, to: str, new_email: str) -> Message:
    """To the old address: a change to ``new_email`` was asked for."""
    return notice(
        ctx,
        "email_change_requested",
        to,
        f"Your account asked to change its email address to {new_email}. It changes only "
        "when that address confirms.",
    )


def email_changed(ctx: MailContext, to: str, new_email: str) -> Message:
    """To the old address: the change is done."""
    return notice(ctx, "email_changed", to, f"Your account's email address is now {new_email}.")


def password_changed(ctx: MailContext, to: str) -> Message:
    """After a password change or reset."""
    return notice(
        ctx,
        "password_changed",
        to,
        "Your password was changed, and your other sessions were signed out.",
    )


def new_device(ctx: MailContext, to: str, user_agent: str, address: str) -> Message:
    """A login from a browser or network this account has not used before."""
    agent = user_agent or "an unknown client"
    return notice(ctx, "new_device", to, f"New sign-in from {agent} (network {address}).")


def token_created(ctx: MailContext, to: str, name: str, scopes: str) -> Message:
    """A personal access token was made for the account."""
    return notice(
        ctx,
        "token_created",
        to,
        f"A personal access token named {name!r} was created for your account ({scopes}).",
    )


def account_disabled(ctx: MailContext, to: str) -> Message:
    """An operator disabled the account."""
    return notice(
        ctx,
        "account_disabled",
        to,
        "Your account was disabled by an operator; its sessions were signed out.",
    )
