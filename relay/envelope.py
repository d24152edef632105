"""The SMTP envelope of one transaction, shared by every stage."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Envelope"]


@dataclass(frozen=True, slots=True)
class Envelope:
    """What the client said outside the message.

    ``mail_from`` is ``""`` for the null sender ``<>``.  ``mail_options`` are the
    MAIL FROM parameters as sent (e.g. ``("SIZE=1234", "BODY=8BITMIME")``).
    ``auth_user`` is the SMTP AUTH user name, ``None`` when the client did not log in.
    """

    mail_from: str
    rcpt_tos: tuple[str, ...]
    mail_options: tuple[str, ...] = ()
    client_ip: str = ""
    client_helo: str = ""
    queue_id: str = ""
    auth_user: str | None = None
    rcpt_options: tuple[tuple[str, ...], ...] = field(default=())
    #: The TLS protocol and cipher the client negotiated ("" when it sent in clear).
    tls_version: str = ""
    tls_cipher: str = ""
    #: The split ledger's key when the front knows better than the message's bytes
    #: what names a retry (the milter: its MTA appends fields of its own); "": those bytes.
    retry_key: str = ""

    @property
    def smtputf8(self) -> bool:
        return any(opt.upper() == "SMTPUTF8" for opt in self.mail_options)

    @property
    def body_8bitmime(self) -> bool:
        return any(opt.upper() == "BODY=8BITMIME" for opt in self.mail_options)
