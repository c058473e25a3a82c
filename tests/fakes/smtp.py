"""A local SMTP server (aiosmtpd) that requires AUTH LOGIN/PLAIN, refuses listed recipients, records mail."""

import logging
import warnings
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.fakes.base import Fake
from tests.support import free_port


class _Handler:
    def __init__(self, fake: Fake):
        self.fake = fake

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.fake.always_fail:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        behaviour = self.fake.next_behaviour()
        mail = message_from_bytes(envelope.content, policy=policy.default)
        body = mail.get_body(("plain",))
        self.fake.record(
            "mail",
            list(envelope.rcpt_tos),
            {
                "subject": str(mail["Subject"]),
                "from": envelope.mail_from,
                "text": body.get_content() if body else "",
            },
            behaviour,
        )
        if behaviour == "internal_error":
            return "451 4.3.0 try again later"
        return "250 Message accepted for delivery"


class _Controller(Controller):
    def factory(self):
        # AUTH without TLS is what a trusted local relay does; the test server says so only once.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return super().factory()


class FakeSmtp:
    """An SMTP server on loopback (plain, AUTH without TLS, as on a trusted relay)."""

    def __init__(self, *, username: str = "notify", password: str = "smtp-fake-password"):
        self.fake = Fake("smtp")
        self.port = free_port()
        self.credentials = {"username": username, "password": password}

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and (
                auth_data.login.decode() == username and auth_data.password.decode() == password
            )
            if not ok:
                self.fake.reject("auth")
            return AuthResult(success=ok, handled=False)

        logging.getLogger("mail.log").setLevel(logging.WARNING)
        self.controller = _Controller(
            _Handler(self.fake),
            hostname="127.0.0.1",
            port=self.port,
            authenticator=authenticator,
            auth_required=True,
            auth_require_tls=False,
        )

    def start(self) -> "FakeSmtp":
        """Listen."""
        self.controller.start()
        return self

    def stop(self) -> None:
        """Stop."""
        self.controller.stop()

    def __enter__(self) -> "FakeSmtp":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
