"""Plain addresses go upstream as aiosmtplib itself would quote them."""

from __future__ import annotations

from aiosmtplib.email import quote_address
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.mailbox import PLAIN_MAILBOX, is_plain_mailbox

_PLAIN = st.from_regex(PLAIN_MAILBOX, fullmatch=True).filter(lambda a: "=?" not in a)


@settings(max_examples=300, deadline=None)
@given(_PLAIN)
def test_a_plain_mailbox_quotes_to_itself_in_angle_brackets(address: str) -> None:
    assert is_plain_mailbox(address)
    assert quote_address(address) == f"<{address}>"


@given(st.text(alphabet='ab.@"<> ()\\é=?\r\n,;:[]', max_size=16))
def test_whatever_is_plain_quotes_to_itself(address: str) -> None:
    if is_plain_mailbox(address):
        assert quote_address(address) == f"<{address}>"


def test_the_others_are_left_to_aiosmtplib() -> None:
    for address in ['"a b"@example.org', "é@example.org", "a@[192.0.2.1]", "", "a", "a@b@c"]:
        assert not is_plain_mailbox(address)
