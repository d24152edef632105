"""Property tests of issue 10: however N distinct addresses are written and
joined, ccguard counts at least N; on valid RFC 5322 lists it counts exactly
what the standard library's parser finds."""

from __future__ import annotations

import base64
import email.policy
import string
from email import message_from_bytes

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from relay.inspect import DomainMatcher, inspect_message, normalise_address
from relay.inspect.scan import AT_SIGNS

MATCHER = DomainMatcher(["example.org"])
CAP = 1 << 22
SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large]

# --- N distinct addresses in every shape, joined by every separator class

DOMAINS = ["example.com", "x1.example.net", "bücher.example", "例え.example", "EXAMPLE.COM"]


def _shape(local: str, domain: str, shape: str, literal: int) -> str:
    """One address ``local@domain`` written in ``shape``."""
    return {
        "plain": f"{local}@{domain}",
        "quoted-local": f'"Guest {local}"@{domain}',
        "comment-before": f"{local}(Sales dept)@{domain}",
        "comment-after": f"{local}@(at work){domain}",
        "cfws": f"{local} @ {domain}",
        "cfws-dots": f"{local} . x @ {domain.replace('.', ' . ')}",
        "literal": f"{local}@[192.0.2.{literal}]",
        "quoted-domain": f'{local}@"{domain}"',
        "name-addr": f"Guest {local} <{local}@{domain}>",
        "quoted-name": f'"Guest, {local}" <{local}@{domain}>',
        "outlook": f"'{local}@{domain}' <{local}@{domain}>",
        "fullwidth-at": f"{local}\uff20{domain}",
        "small-at": f"{local}\ufe6b{domain}",
        "encoded-name": f"=?utf-8?b?{base64.b64encode(b'Guest').decode()}?= <{local}@{domain}>",
    }[shape]


SHAPES = [
    "plain", "quoted-local", "comment-before", "comment-after", "cfws", "cfws-dots",
    "literal", "quoted-domain", "name-addr", "quoted-name", "outlook", "fullwidth-at",
    "small-at", "encoded-name",
]  # fmt: skip
_unicode_sep = st.characters(
    categories=("Po", "Ps", "Pe", "Pd", "Pi", "Pf", "Pc", "Zs", "Zl", "Zp", "Sm", "Sc", "Sk", "So")
).filter(lambda c: c not in AT_SIGNS)
_ascii_sep = st.sampled_from([*string.punctuation.replace("@", ""), " ", "\t"])
_separator = st.one_of(
    st.sampled_from([",", ";", ", ", "; ", "/", "|", "][", ")(", "><", ",\r\n ", "\r\n\t", ""]),
    st.text(st.one_of(_ascii_sep, _unicode_sep), min_size=1, max_size=3),
)


@st.composite
def _addresses(draw: st.DrawFn) -> list[str]:
    """N distinct addresses, each in a drawn shape (locals are distinct)."""
    count = draw(st.integers(1, 40))
    suffix = draw(st.text(string.ascii_lowercase + string.digits, max_size=4))
    out = []
    for index in range(count):
        shape = draw(st.sampled_from(SHAPES))
        domain = draw(st.sampled_from(DOMAINS))
        out.append(_shape(f"u{index}{suffix}", domain, shape, index))
    return out


def _total(addresses: list[str], separators: list[str]) -> int:
    value = addresses[0] + "".join(
        separators[i % len(separators)] + box for i, box in enumerate(addresses[1:])
    )
    message = f"From: s@example.org\r\nTo: {value}\r\nSubject: s\r\n\r\nbody\r\n"
    exposure = inspect_message(message.encode(), MATCHER, max_header_bytes=CAP)
    assert exposure.visible_total == exposure.visible_internal + exposure.visible_external
    return exposure.visible_total


@settings(max_examples=400, suppress_health_check=SLOW, deadline=None)
@given(_addresses(), st.lists(_separator, min_size=1, max_size=4))
def test_n_addresses_count_at_least_n_whatever_joins_them(
    addresses: list[str], separators: list[str]
) -> None:
    n = len(addresses)
    comma = _total(addresses, [", "])
    assert comma == n
    assert _total(addresses, ["; "]) == comma  # ";" lists count like "," lists
    assert _total(addresses, separators) >= comma


@settings(max_examples=150, suppress_health_check=SLOW, deadline=None)
@given(_addresses(), _separator)
def test_addresses_inside_a_quoted_local_part_or_literal_count(
    addresses: list[str], separator: str
) -> None:
    plain = [box for box in addresses if "<" not in box and '"' not in box and "[" not in box]
    assume(plain)
    inner = separator.join(plain).replace("\\", "").replace('"', "")
    assume("]" not in inner and "[" not in inner)
    assert _total([f'"{inner}"@example.org'], [","]) >= len(plain) + 1
    assert _total([f"x@[{inner}]"], [","]) >= len(plain) + 1


# --- valid RFC 5322 lists: exactly what the standard library finds

ATEXT = string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~"
_atom = st.text(ATEXT, min_size=1, max_size=6)
_dot_atom = st.lists(_atom, min_size=1, max_size=3).map(".".join)
_qtext = st.text(
    st.characters(codec="ascii", categories=("L", "N", "P", "S", "Zs")).filter(
        lambda c: c not in '"\\@'
    ),
    min_size=1,
    max_size=12,
)
_label = st.text(string.ascii_letters + string.digits, min_size=1, max_size=6)
_domain = st.one_of(
    st.lists(_label, min_size=1, max_size=3).map(lambda ls: ".".join([*ls, "example"])),
    st.integers(0, 255).map(lambda i: f"[192.0.2.{i}]"),
)
_local = st.one_of(_dot_atom, _qtext.map(lambda t: f'"{t}"'))
_phrase = st.one_of(
    st.lists(_atom, min_size=1, max_size=3).map(" ".join),
    _qtext.map(lambda t: f'"{t}"'),
    _qtext.map(lambda t: f"=?utf-8?b?{base64.b64encode(t.encode()).decode()}?="),
)
_comment = _qtext.map(lambda t: "(" + t.replace("(", "").replace(")", "") + ")")


@st.composite
def _valid_mailbox(draw: st.DrawFn) -> str:
    spec = f"{draw(_local)}@{draw(_domain)}"
    style = draw(st.sampled_from(["spec", "angle", "name", "comment"]))
    if style == "angle":
        return f"<{spec}>"
    if style == "name":
        return f"{draw(_phrase)} <{spec}>"
    if style == "comment":
        return f"{spec} {draw(_comment)}"
    return spec


@st.composite
def _valid_list(draw: st.DrawFn) -> str:
    items = []
    for _ in range(draw(st.integers(1, 12))):
        if draw(st.integers(0, 5)) == 0:
            members = draw(st.lists(_valid_mailbox(), max_size=4))
            items.append(f"{draw(_phrase)}: {', '.join(members)};")
        else:
            items.append(draw(_valid_mailbox()))
    return draw(st.sampled_from([", ", ",\r\n "])).join(items)


@settings(max_examples=400, suppress_health_check=SLOW, deadline=None)
@given(_valid_list())
def test_valid_lists_count_what_the_standard_library_finds(value: str) -> None:
    message = f"From: s@example.org\r\nTo: {value}\r\nSubject: s\r\n\r\nbody\r\n".encode()
    header = message_from_bytes(message, policy=email.policy.default)["To"]
    assume(not header.defects)
    expected = {normalise_address(address.addr_spec) for address in header.addresses}
    exposure = inspect_message(message, MATCHER, max_header_bytes=CAP)
    assert exposure.unparseable == 0
    assert set(exposure.external_addresses) == expected
    assert exposure.visible_total == len(expected)
