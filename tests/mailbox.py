"""A real SMTP server for tests (aiosmtpd on a free port), and helpers to send the outbox to it.

Use it from a test module with::

    from tests.mailbox import (
        SmtpSink,
        deliver,
        mail_settings,
        smtp_sink_fixture,  # noqa: F401 (registers the smtp_sink fixture)
    )

    def test_reset(make_app, smtp_sink):
        app = make_app(**mail_settings(smtp_sink))
        ...                                  # something queues mail
        deliver(app)                         # runs the sender once, as ``taskapi serve`` would
        (mail,) = smtp_sink.wait_for(1, to="alice@example.com")

The sink keeps every message it accepted, parsed as ``email.message.EmailMessage``. It can
be stopped and started again on the same port (a mail server outage), and told to refuse
some recipients (``refuse[address] = "550 5.1.1 No such user"``). Outbox tables are shared
by every test on a database, so find your messages by recipient rather than by count.
"""

from __future__ import annotations

import ipaddress
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask import Flask

from taskapi.mail import send_pending
from tests.conftest import free_port


class _Handler:
    """aiosmtpd's handler: refuse the listed recipients, keep every accepted message."""

    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        """Accept the recipient unless the test told the sink to refuse it."""
        refusal = self.sink.refuse.get(address.lower())
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        """Keep the message (with its envelope recipients) and answer 250."""
        raw = envelope.original_content or envelope.content
        data = raw if isinstance(raw, bytes) else str(raw).encode()
        parsed = message_from_bytes(data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.sink.accept(parsed, [str(r) for r in envelope.rcpt_tos])
        return "250 Message accepted for delivery"


class SmtpSink:
    """An SMTP server on 127.0.0.1:``port`` that keeps what it receives.

    Plain by default; ``tls="starttls"`` (required before anything else) or ``"ssl"``
    (implicit TLS) with a ``certificate`` (see ``self_signed_certificate``), and
    ``credentials`` to require AUTH with that user name and password (aiosmtpd 1.4 then
    warns that ``Session.login_data`` is deprecated, and with ``tls="ssl"`` that AUTH does
    not require TLS: see the filterwarnings marks on ``test_mail.test_tls_and_login``).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        tls: Literal["none", "starttls", "ssl"] = "none",
        certificate: tuple[Path, Path] | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.tls = tls
        self.certificate = certificate
        self.credentials = credentials
        self.logins: list[str] = []
        self.refuse: dict[str, str] = {}
        self._messages: list[EmailMessage] = []
        self._envelopes: list[list[str]] = []
        self._lock = threading.Condition()
        self._controller: Controller | None = None

    @property
    def messages(self) -> list[EmailMessage]:
        """A copy of every message received so far, in arrival order."""
        with self._lock:
            return list(self._messages)

    @property
    def recipients(self) -> list[list[str]]:
        """The envelope recipients of each message, in the same order as ``messages``."""
        with self._lock:
            return [list(r) for r in self._envelopes]

    def accept(self, message: EmailMessage, recipients: list[str]) -> None:
        """Record a received message (called on the server's thread)."""
        with self._lock:
            self._messages.append(message)
            self._envelopes.append(recipients)
            self._lock.notify_all()

    def to(self, address: str) -> list[EmailMessage]:
        """The messages whose envelope includes ``address`` (case-insensitive)."""
        wanted = address.lower()
        with self._lock:
            return [
                m
                for m, rcpts in zip(self._messages, self._envelopes, strict=True)
                if wanted in (r.lower() for r in rcpts)
            ]

    def wait_for(
        self, count: int, timeout: float = 10, *, to: str | None = None
    ) -> list[EmailMessage]:
        """Wait until at least ``count`` messages (to ``to`` if given) arrived; return them."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = self.to(to) if to else list(self._messages)
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {count} message(s){f' to {to}' if to else ''}, "
                        f"got {len(found)} in {timeout} s"
                    )
                self._lock.wait(left)

    def clear(self) -> None:
        """Forget the messages received so far."""
        with self._lock:
            self._messages.clear()
            self._envelopes.clear()

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._controller is not None

    def start(self) -> None:
        """Listen on ``port`` (again, after ``stop``)."""
        if self._controller is not None:
            return
        options: dict[str, Any] = {}
        if self.tls != "none":
            assert self.certificate is not None, "TLS needs a certificate"
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self.certificate)
            if self.tls == "ssl":
                options["ssl_context"] = context
            else:
                options.update(tls_context=context, require_starttls=True)
        if self.credentials is not None:
            options.update(
                authenticator=self._authenticate,
                auth_required=True,
                # aiosmtpd only counts STARTTLS as TLS; with implicit TLS all of it is.
                auth_require_tls=self.tls == "starttls",
            )
        controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, **options)
        controller.start()
        self._controller = controller

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        """aiosmtpd's authenticator: the configured user name and password only."""
        assert self.credentials is not None
        user, password = self.credentials
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login.decode(),
            auth_data.password.decode(),
        ) == (user, password)
        if ok:
            self.logins.append(user)
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535

    def stop(self) -> None:
        """Stop listening: connections are refused until ``start``."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA, and its key, as PEM files in ``folder``.

    Trust it in the sender with ``monkeypatch.setenv("SSL_CERT_FILE", str(certificate))``:
    ``ssl.create_default_context()`` reads OpenSSL's default paths when it is called.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "taskapi test SMTP")])
    now = datetime.now(UTC)
    public = key.public_key()
    flags = dict.fromkeys(
        ["content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
         "crl_sign", "encipher_only", "decipher_only"], False,
    )  # fmt: skip
    signing = x509.KeyUsage(digital_signature=True, key_cert_sign=True, **flags)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(signing, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(name="smtp_sink")
def smtp_sink_fixture() -> Iterator[SmtpSink]:
    """A running SMTP sink on a free port, stopped at the end of the test."""
    sink = SmtpSink()
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


def mail_settings(sink: SmtpSink) -> dict[str, Any]:
    """Setting overrides that send mail to ``sink`` (plain SMTP) and run no background sender."""
    return {
        "mail_backend": "smtp",
        "smtp_host": "127.0.0.1",
        "smtp_port": sink.port,
        "smtp_starttls": False,
        "smtp_ssl": False,
        "smtp_timeout_seconds": 5,
        "mail_sender": False,
    }


def deliver(app: Flask, **options: Any) -> int:
    """Send the app's due outbox rows once, as the sender inside ``taskapi serve`` would.

    Returns how many were sent. ``options`` go to ``taskapi.mail.send_pending`` (``now=``).
    """
    state = app.extensions["taskapi"]
    return send_pending(state.session_factory, state.settings, **options)
