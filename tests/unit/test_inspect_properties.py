"""Property tests: the counts do not depend on how the addresses are written."""

from __future__ import annotations

import base64
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.inspect import DomainMatcher, inspect_message, parse_address_header

MATCHER = DomainMatcher(["example.org", "*.corp.example.org"])
HEADERS = ("To", "Cc", "Resent-To", "Resent-Cc", "tO", "CC")
SPECIALS = '"\\<>()[]:;,@.'

_atom = st.text(string.ascii_lowercase + string.digits + "_+-", min_size=1, max_size=8)
_local = st.lists(_atom, min_size=1, max_size=3).map(".".join)
_label = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=8)
_domain = st.tuples(_label, st.sampled_from(["example.com", "example.net", "bücher.example"]))
_address = st.tuples(_local, _domain.map(lambda parts: f"{parts[0]}.{parts[1]}"))
_name = st.text(
    st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\r\n@"), max_size=20
)


def _q_encode(text: str) -> str:
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        out.append(char if char.isascii() and char.isalnum() else f"={byte:02X}")
    return f"=?utf-8?q?{''.join(out)}?="


def _b_encode(text: str) -> str:
    return f"=?UTF-8?B?{base64.b64encode(text.encode('utf-8')).decode('ascii')}?="


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _shout(domain: str, upper: bool) -> str:
    return domain.upper() if upper else domain


@st.composite
def _mailbox(draw: st.DrawFn, local: str, domain: str) -> str:
    spec = f"{local}@{_shout(domain, draw(st.booleans()))}"
    name = draw(_name)
    style = draw(st.sampled_from(["bare", "quoted", "q", "b", "comment", "angle"]))
    if style == "bare" or (not name and style != "angle"):
        return spec
    if style == "quoted":
        return f"{_quoted(name)} <{spec}>"
    if style == "q":
        return f"{_q_encode(name)} <{spec}>"
    if style == "b":
        return f"{_b_encode(name)} <{spec}>"
    if style == "comment":
        return f"{spec} ({name.replace('(', '').replace(')', '').replace(chr(92), '')})"
    return f"<{spec}>"


@st.composite
def _message(draw: st.DrawFn) -> tuple[bytes, int, int]:
    addresses = draw(st.lists(_address, min_size=1, max_size=40, unique=True))
    occurrences = list(addresses) + draw(
        st.lists(st.sampled_from(addresses), max_size=10)  # duplicates
    )
    boxes = [draw(_mailbox(local, domain)) for local, domain in draw(st.permutations(occurrences))]
    lines = []
    while boxes:
        take = draw(st.integers(1, max(1, len(boxes))))
        chunk, boxes = boxes[:take], boxes[take:]
        sep = draw(st.sampled_from([", ", ",\r\n ", ",\r\n\t", " ,  "]))
        value = sep.join(chunk)
        if draw(st.booleans()):
            value = f"Group {len(lines)}:{value};"
        lines.append(f"{draw(st.sampled_from(HEADERS))}: {value}\r\n")
    domains = {domain for _, domain in addresses}
    head = "From: x@example.org\r\n" + "".join(lines) + "Subject: t\r\n\r\nbody\r\n"
    return head.encode("utf-8"), len(addresses), len(domains)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(_message())
def test_n_distinct_addresses_count_as_n_external(case: tuple[bytes, int, int]) -> None:
    message, n, domains = case
    exposure = inspect_message(message, MATCHER, max_header_bytes=1 << 20)
    assert exposure.visible_external == n
    assert exposure.visible_internal == 0
    assert exposure.unparseable == 0
    assert exposure.external_domains == domains


@settings(max_examples=500)
@given(st.binary(max_size=2000))
def test_inspect_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    exposure = inspect_message(data, MATCHER, max_header_bytes=512)
    assert exposure.visible_total == exposure.visible_internal + exposure.visible_external
    assert exposure.unparseable <= exposure.visible_external


@settings(max_examples=500)
@given(st.text(alphabet=st.sampled_from(SPECIALS + " \t\r\nab@xé=?"), max_size=300))
def test_parse_never_raises_on_special_soup(value: str) -> None:
    parsed = parse_address_header(value)
    assert all("@" in box.address for box in parsed.mailboxes)


@settings(max_examples=200)
@given(st.sampled_from(SPECIALS.replace("@", "").replace(".", "")), st.integers(0, 299))
def test_one_malformation_never_hides_300_addresses(junk: str, where: int) -> None:
    boxes = [f"user{i}@d{i % 50}.example.com" for i in range(300)]
    boxes[where] = junk + boxes[where]
    message = ("To: " + ", ".join(boxes) + "\r\n\r\n").encode()
    exposure = inspect_message(message, MATCHER, max_header_bytes=1 << 20)
    assert exposure.visible_external == 300
    assert exposure.external_domains == 50


@st.composite
def _shown_in_names(draw: st.DrawFn) -> tuple[bytes, int]:
    """Internal mailboxes whose display names or comments show external
    addresses (quoted, encoded or in comments): (message, shown addresses)."""
    shown = draw(st.lists(_address, min_size=1, max_size=12, unique=True))
    boxes = []
    for index, (local, domain) in enumerate(shown):
        text = f"{local}@{domain}"
        own = f"me{index}@example.org"
        style = draw(st.sampled_from(["quoted", "q", "b", "comment", "group"]))
        if style == "quoted":
            boxes.append(f"{_quoted('see ' + text)} <{own}>")
        elif style == "q":
            boxes.append(f"{_q_encode(text)} <{own}>")
        elif style == "b":
            boxes.append(f"{_b_encode(text + ', x')} <{own}>")
        elif style == "comment":
            boxes.append(f"{own} (cc {text})")
        else:
            boxes.append(f"{_quoted(text)}: {own};")
    head = "To: " + ",\r\n ".join(boxes) + "\r\n\r\n"
    return head.encode("utf-8"), len(shown)


@settings(max_examples=200)
@given(_shown_in_names())
def test_addresses_shown_in_names_and_comments_count(case: tuple[bytes, int]) -> None:
    message, n = case
    exposure = inspect_message(message, MATCHER, max_header_bytes=1 << 20)
    assert exposure.visible_external == n
    assert exposure.unparseable == n
    assert exposure.visible_internal == n  # the me<i>@example.org mailboxes


@settings(max_examples=200)
@given(
    st.lists(_address, min_size=2, max_size=30, unique=True),
    st.lists(st.sampled_from(["\r", "\n", "\r\n", "\x00"]), min_size=1, max_size=30),
)
def test_bare_line_breaks_never_hide_addresses(
    addresses: list[tuple[str, str]], breaks: list[str]
) -> None:
    """Whatever bare CR/LF (or NUL) is put before the commas of a To field,
    every address still counts."""
    value = "".join(
        (breaks[i % len(breaks)] if i else "") + ("," if i else "") + f" {local}@{domain}"
        for i, (local, domain) in enumerate(addresses)
    )
    message = f"Subject: s\r\nTo:{value}\r\n\r\nbody".encode()
    exposure = inspect_message(message, MATCHER, max_header_bytes=1 << 20)
    assert exposure.visible_external == len(addresses)
