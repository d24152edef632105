"""The milter's split-ledger key leaves out only what Postfix appended."""

from __future__ import annotations

from relay.envelope import Envelope
from relay.milter.identity import added_by_mta, retry_key
from relay.milter.message import MessageBuilder

QID = "4F2AB1234"
ENV = Envelope(mail_from="alice@example.org", rcpt_tos=("p0@example.com",), queue_id=QID)


def _message(*fields: tuple[str, bytes]) -> MessageBuilder:
    builder = MessageBuilder()
    for name, value in (("From", b" alice@example.org"), ("Subject", b" hi"), *fields):
        builder.header(name, value)
    builder.body(b"body\r\n")
    return builder


def test_postfix_message_id_and_date_are_left_out_of_the_key() -> None:
    one = _message(
        ("Message-Id", b" <20261201132207.4F2AB1234@postfix.example.net>"),
        ("Date", b" Tue,  1 Dec 2026 13:22:07 +0000 (UTC)"),
    ).build()
    retry = _message(
        ("Message-Id", b" <20261201132209.5A1B2C3D4@postfix.example.net>"),
        ("Date", b" Tue,  1 Dec 2026 13:22:09 +0000 (UTC)"),
    ).build()
    assert added_by_mta(one.fields, QID) == {2, 3}
    assert retry_key(ENV, one) == retry_key(
        Envelope(mail_from=ENV.mail_from, rcpt_tos=(), queue_id="5A1B2C3D4"), retry
    )


def test_the_clients_own_message_id_and_date_stay_in_the_key() -> None:
    first = _message(
        ("Message-ID", b" <one@example.org>"), ("Date", b" Mon, 02 Mar 2026 10:00:00 +0000")
    ).build()
    second = _message(
        ("Message-ID", b" <two@example.org>"), ("Date", b" Mon, 02 Mar 2026 10:00:00 +0000")
    ).build()
    assert added_by_mta(first.fields, QID) == set()
    assert retry_key(ENV, first) != retry_key(ENV, second)
