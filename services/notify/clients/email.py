"""E-mail over SMTP (aiosmtplib), and the console channel of the demo."""

import logging
from email.message import EmailMessage
from email.utils import make_msgid

import aiosmtplib

from services.notify.clients.base import Message, Outcome

log = logging.getLogger("minsheng.notify.console")


class Smtp:
    """E-mail through the configured SMTP server (implicit TLS, STARTTLS or plain on a trusted network)."""

    name = "smtp"
    channel = "email"

    def __init__(self, settings):
        self.s = settings

    @property
    def configured(self) -> bool:
        """An SMTP host is set."""
        return bool(self.s.smtp_host)

    def rate_rules(self, msg: Message) -> list[tuple[str, str]]:
        """The server's sending rate."""
        return [(self.s.smtp_rate, "smtp")]

    async def send(self, msg: Message) -> Outcome:
        """One message to one address."""
        mail = EmailMessage()
        mail["From"] = self.s.smtp_from
        mail["To"] = msg.address
        mail["Subject"] = msg.subject or msg.text[:40]
        msg_id = make_msgid(idstring=msg.delivery_id.replace("-", ""), domain="minsheng.notify")
        mail["Message-ID"] = msg_id
        mail.set_content(msg.text)
        security = self.s.smtp_security
        try:
            await aiosmtplib.send(
                mail,
                hostname=self.s.smtp_host,
                port=self.s.smtp_port,
                username=self.s.smtp_username,
                password=self.s.smtp_password,
                use_tls=security == "ssl",
                start_tls=security == "starttls",
                timeout=self.s.provider_timeout_seconds,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            return Outcome("permanent", code="recipient_refused", detail=str(exc)[:300])
        except aiosmtplib.SMTPAuthenticationError as exc:
            return Outcome("provider_down", code=f"smtp_{exc.code}", detail="authentication refused")
        except aiosmtplib.SMTPResponseException as exc:
            verdict = "retry" if 400 <= exc.code < 500 else "permanent"
            return Outcome(verdict, code=f"smtp_{exc.code}", detail=str(exc.message)[:300])
        except aiosmtplib.SMTPTimeoutError:
            return Outcome("unknown", code="timeout", detail="the SMTP server did not answer in time")
        except (aiosmtplib.SMTPException, OSError) as exc:
            return Outcome("retry", code="smtp_unreachable", detail=type(exc).__name__)
        return Outcome("ok", code="250", message_id=msg_id.strip("<>")[:100], delivered=True)


class Console:
    """The demo channel: the alert is a log line (addresses masked)."""

    name = "console"
    channel = "console"
    configured = True

    def __init__(self, mask):
        self.mask = mask

    def rate_rules(self, msg: Message) -> list[tuple[str, str]]:
        """No limit."""
        return []

    async def send(self, msg: Message) -> Outcome:
        """Log the alert."""
        log.warning("ALERT to %s (%s): %s", msg.recipient_name, self.mask(msg.address), msg.text)
        return Outcome("ok", code="logged", delivered=True)
