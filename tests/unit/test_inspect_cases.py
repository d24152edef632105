"""Hand-written header cases with the exact counts a user would see.

Internal domains in every case: ``example.org`` and ``*.corp.example.net``.
Each case is (id, header lines joined by ``\\n``, total, internal, external,
external domains, unparseable).  Lines are sent with CRLF endings unless the
id starts with ``lf-``; a bare CR is written ``\r`` and a bare LF ``␊``.
"""

from __future__ import annotations

import pytest

from relay.inspect import DomainMatcher, inspect_message

MATCHER = DomainMatcher(["example.org", "*.corp.example.net"])

B64_TWO = "YUBleGFtcGxlLmNvbSwgYkBleGFtcGxlLm5ldA=="  # "a@example.com, b@example.net"

# fmt: off
CASES: list[tuple[str, str, int, int, int, int, int]] = [
    # --- which headers are visible
    ("to-one-external", "To: a@example.com", 1, 0, 1, 1, 0),
    ("to-one-internal", "To: a@example.org", 1, 1, 0, 0, 0),
    ("cc-two", "Cc: a@example.com, b@example.net", 2, 0, 2, 2, 0),
    ("resent-to", "Resent-To: a@example.com", 1, 0, 1, 1, 0),
    ("resent-cc", "Resent-Cc: a@example.com", 1, 0, 1, 1, 0),
    ("bcc-hidden", "To: a@example.com\nBcc: b@example.net, c@example.net", 1, 0, 1, 1, 0),
    ("resent-bcc-hidden", "Resent-Bcc: b@example.net", 0, 0, 0, 0, 0),
    ("two-to-headers", "To: a@example.com\nTo: b@example.com", 2, 0, 2, 1, 0),
    ("resent-blocks",
     "Resent-To: a@example.com\nResent-Cc: b@example.com\nResent-To: a@example.com",
     2, 0, 2, 1, 0),
    ("header-name-case", "TO: a@example.com\ncC: b@example.com", 2, 0, 2, 1, 0),
    ("space-before-colon", "To : a@example.com", 1, 0, 1, 1, 0),
    ("other-headers-hidden",
     "From: a@example.com\nReply-To: b@example.com\nSender: c@example.com\n"
     "Delivered-To: d@example.com\nReturn-Path: <e@example.com>", 0, 0, 0, 0, 0),
    ("body-not-read", "Subject: x\n\nTo: a@example.com, b@example.com", 0, 0, 0, 0, 0),
    # --- uniqueness
    ("same-in-to-and-cc", "To: a@example.com\nCc: a@example.com", 1, 0, 1, 1, 0),
    ("display-names-differ", 'To: Alice <a@example.com>, "A. Smith" <a@example.com>',
     1, 0, 1, 1, 0),
    ("domain-case", f"To: a@{'example'.upper()}.com, a@example.{'com'.upper()}", 1, 0, 1, 1, 0),
    ("local-case-kept", "To: Alice@example.com, alice@example.com", 2, 0, 2, 1, 0),
    ("idna-u-and-a-label", "To: x@bücher.example, x@xn--bcher-kva.example", 1, 0, 1, 1, 0),
    ("idna-upper", "To: x@BÜCHER.example, y@XN--BCHER-KVA.example", 2, 0, 2, 1, 0),
    ("trailing-dot-domain", "To: a@example.com., a@example.com", 1, 0, 1, 1, 0),
    ("quoted-local-same", 'To: "john"@example.com, john@example.com', 1, 0, 1, 1, 0),
    ("cfws-local-same", "To: john . smith @ example . com\nCc: john.smith@example.com",
     1, 0, 1, 1, 0),
    # --- display names, comments, quoting
    ("name-comma", 'To: "Smith, John" <j@example.com>', 1, 0, 1, 1, 0),
    # Every recipient reads a display name or comment, so an address in one
    # counts (unparseable, so external), unless it is the mailbox's own.
    ("name-at", 'To: "j@example.net" <j@example.com>', 2, 0, 2, 2, 1),
    ("name-escaped-quotes", 'To: "John \\"JJ\\" Smith" <j@example.com>, k@example.com',
     2, 0, 2, 1, 0),
    ("name-angle-inside", 'To: "Doe, Jane <jane@example.net>" <jd@example.com>', 2, 0, 2, 2, 1),
    ("name-unquoted-words", "To: John Q. Public <jqp@example.com>", 1, 0, 1, 1, 0),
    ("comment-after", "To: j@example.com (John, at work), (x) k@example.com", 2, 0, 2, 1, 0),
    ("comment-nested", "To: j@example.com (a (b, c@example.net) d)", 2, 0, 2, 2, 1),
    ("comment-in-addr-spec", "To: john(c)@(d)example.com\nCc: john@example.com", 1, 0, 1, 1, 0),
    ("comment-escaped-paren", "To: j@example.com (a \\) b@example.net)", 2, 0, 2, 2, 1),
    ("name-shows-three",
     'To: "a@x1.example.com, b@x2.example.com, c@x3.example.com" <me@example.org>',
     4, 1, 3, 3, 3),
    ("comment-shows-two", "To: me@example.org (a@x1.example.com, b@x2.example.com)",
     3, 1, 2, 2, 2),
    ("name-is-own-address", 'To: "bob@example.com" <bob@example.com>', 1, 0, 1, 1, 0),
    ("name-comment-own-address", 'To: "Bob (bob@example.com)" <bob@example.com>', 1, 0, 1, 1, 0),
    ("own-address-names-differ",
     'To: "bob@example.com" <bob@example.com>, Bob <bob@example.com>\nCc: bob@example.com',
     1, 0, 1, 1, 0),
    ("name-shows-internal", 'To: "bob@example.org" <ann@example.org>', 2, 1, 1, 1, 1),
    ("name-shows-listed", 'To: "a@example.com" <me@example.org>, a@example.com', 2, 1, 1, 1, 0),
    ("name-shows-other-header", 'To: "a@example.com" <me@example.org>\nCc: a@example.com',
     2, 1, 1, 1, 0),
    ("group-name-shows", 'To: "Team a@example.com": me@example.org;', 2, 1, 1, 1, 1),
    ("comment-only-element", "To: me@example.org, (b@example.net)", 2, 1, 1, 1, 1),
    ("comment-in-angle", "To: Me <me(b@example.net)@example.org>", 2, 1, 1, 1, 1),
    ("quoted-local-space", 'To: "john smith"@example.com', 1, 0, 1, 1, 0),
    ("quoted-local-at", 'To: "a@b"@example.com, "a,b"@example.com', 3, 0, 3, 2, 2),
    # --- folding and encodings
    ("folded-list", "To: a@example.com,\n b@example.com,\n\tc@example.net", 3, 0, 3, 2, 0),
    ("folded-name", 'To: "Smith,\n John" <j@example.com>', 1, 0, 1, 1, 0),
    ("folded-inside-angle", "To: John <j@\n example.com>", 1, 0, 1, 1, 0),
    ("lf-line-endings", "To: a@example.com,\n b@example.com\nCc: c@example.org", 3, 1, 2, 1, 0),
    ("rfc2047-q", "To: =?utf-8?q?M=C3=BCller=2C_Hans?= <h@example.com>, k@example.com",
     2, 0, 2, 1, 0),
    ("rfc2047-b", "To: =?utf-8?b?TcO8bGxlciwgSGFucw==?= <h@example.com>", 1, 0, 1, 1, 0),
    ("rfc2047-at-in-name", "To: =?utf-8?q?x=40example.net?= <h@example.com>", 2, 0, 2, 2, 1),
    ("rfc2047-name-shows-two",
     "To: =?utf-8?q?a=40x1=2Eexample=2Ecom=2C_b=40x2=2Eexample=2Ecom?= <me@example.org>",
     3, 1, 2, 2, 2),
    ("rfc2047-quoted", 'To: "=?iso-8859-1?q?J=F6rg?=" <j@example.com>', 1, 0, 1, 1, 0),
    ("rfc6532-name", "To: Jörg Müller <j@example.com>", 1, 0, 1, 1, 0),
    ("rfc6532-local", "To: jörg@example.com, JÖRG@example.com", 2, 0, 2, 1, 0),
    ("rfc6532-quoted-name", 'To: "Müller, Jörg" <jm@bücher.example>', 1, 0, 1, 1, 0),
    # --- groups
    ("group-undisclosed", "To: undisclosed-recipients:;", 0, 0, 0, 0, 0),
    ("group-two", "To: Team: a@x.example.com, b@y.example.net;", 2, 0, 2, 2, 0),
    ("group-then-mailbox", "To: Team: a@example.com, b@example.net;, c@example.org",
     3, 1, 2, 2, 0),
    ("group-empty-cc", "To: a@example.com\nCc: Friends:;", 1, 0, 1, 1, 0),
    ("group-names-comments", 'To: Staff: "Doe, J" <j@example.com> (x), k@example.com;',
     2, 0, 2, 1, 0),
    ("group-unterminated", "To: Team: a@example.com, b@example.net", 2, 0, 2, 2, 0),
    ("group-quoted-name", 'To: "Project: X": a@example.com;', 1, 0, 1, 1, 0),
    # --- literals and obsolete syntax
    ("literal-ipv4", "To: user@[192.0.2.1]", 1, 0, 1, 1, 0),
    ("literal-same", "To: user@[192.0.2.1], User <user@[ 192.0.2.1 ]>", 1, 0, 1, 1, 0),
    ("literal-ipv6", "To: user@[IPv6:2001:db8::1]", 1, 0, 1, 1, 0),
    ("obs-route", "To: <@relay.example.net,@relay2.example.net:user@example.com>", 1, 0, 1, 1, 0),
    ("obs-route-name", "To: Bob <@relay.example.net:bob@example.com>", 1, 0, 1, 1, 0),
    ("obs-empty-elements", "To: a@example.com,,, b@example.com,", 2, 0, 2, 1, 0),
    # --- internal vs external
    ("wildcard-subdomains", "To: a@x.corp.example.net, b@y.z.corp.example.net", 2, 2, 0, 0, 0),
    ("wildcard-not-bare", "To: a@corp.example.net", 1, 0, 1, 1, 0),
    ("never-badexample", "To: a@badexample.org, b@notcorp.example.net", 2, 0, 2, 2, 0),
    ("exact-not-subdomain", "To: a@sub.example.org", 1, 0, 1, 1, 0),
    ("internal-case", f"To: a@{'example.org'.upper()}, b@{'x.corp.example.net'.title()}",
     2, 2, 0, 0, 0),
    ("mixed", "To: a@example.org, b@example.com\nCc: c@x.corp.example.net, d@example.net",
     4, 2, 2, 2, 0),
    # --- fail closed
    ("bare-name-and-address", "To: Bob Smith bob@example.com", 1, 0, 1, 1, 1),
    ("unclosed-angle", "To: a@example.com, Bob <bob@example.net", 2, 0, 2, 2, 1),
    ("unclosed-quote", 'To: "Bob <bob@example.net>, a@example.com', 2, 0, 2, 2, 1),
    ("unparseable-internal-is-external", "To: Bob Smith bob@example.org", 1, 0, 1, 1, 1),
    ("unparseable-dedup-with-parsed", "To: a@example.com\nCc: junk a@example.com", 1, 0, 1, 1, 0),
    ("angle-soup", "To: <<<a@example.com b@example.com c@example.com", 3, 0, 3, 1, 3),
    ("whole-header-encoded", f"To: =?utf-8?b?{B64_TWO}?=", 2, 0, 2, 2, 2),
    ("missing-domain", "To: a@, b@example.com", 1, 0, 1, 1, 0),
    ("bare-word", "To: postmaster", 0, 0, 0, 0, 0),
    ("semicolon-separated", "To: a@example.com; b@example.net", 2, 0, 2, 2, 0),
    ("addresses-in-phrase-only", 'To: "a@example.com, b@example.net"', 2, 0, 2, 2, 2),
    ("group-name-is-address", "To: a@example.com: b@example.net;", 2, 0, 2, 2, 1),
    ("unclosed-comment", "To: (note a@example.com, b@example.net", 2, 0, 2, 2, 1),
    ("stray-angle", "To: a@example.com>, b@example.net", 2, 0, 2, 2, 1),
    # --- lines that belong to no field: a reader may show them, so they count
    ("bare-cr-splits-to", "To: a@x1.example.com\r, b@x2.example.com\r, c@x3.example.com",
     3, 0, 3, 3, 2),
    ("bare-cr-after-undisclosed",
     "To: undisclosed-recipients:;\r, b@x2.example.com\r, c@x3.example.com", 2, 0, 2, 2, 2),
    ("bare-lf-splits-cc", "Cc: a@example.com␊, b@example.net", 2, 0, 2, 2, 1),
    ("lf-bare-cr", "To: a@example.com\r, b@example.net", 2, 0, 2, 2, 1),
    ("bare-cr-internal-junk", "To: me@example.org\r, you@example.org", 2, 1, 1, 1, 1),
    ("nul-in-field-name", "To\x00: x@example.com", 1, 0, 1, 1, 1),
    ("junk-with-continuation", "To\x00: x@example.com,\n y@example.net", 2, 0, 2, 2, 2),
    ("junk-after-subject", "Subject: hi\r, a@example.com", 1, 0, 1, 1, 1),
    ("space-before-name-after-junk", "junk\n To: a@example.com", 1, 0, 1, 1, 1),
    ("junk-dedup-with-parsed", "To: a@example.com\r, a@example.com", 1, 0, 1, 1, 0),
    ("junk-without-address", "just words\nTo: a@example.com", 1, 0, 1, 1, 0),
    ("bare-cr-then-field", "To: a@example.com\rCc: b@example.net", 2, 0, 2, 2, 0),
    ("bare-cr-then-blank-is-fold", "To: a@example.com,\r b@example.net", 2, 0, 2, 2, 0),
]
# fmt: on


def _message(case_id: str, lines: str) -> bytes:
    eol = "\n" if case_id.startswith("lf-") else "\r\n"
    head = lines.replace("\n", eol).replace("␊", "\n")
    return f"From: sender@example.org{eol}{head}{eol}{eol}body{eol}".encode()


@pytest.mark.parametrize(
    ("case_id", "lines", "total", "internal", "external", "domains", "unparseable"),
    CASES,
    ids=[case[0] for case in CASES],
)
def test_header_case(
    case_id: str,
    lines: str,
    total: int,
    internal: int,
    external: int,
    domains: int,
    unparseable: int,
) -> None:
    exposure = inspect_message(_message(case_id, lines), MATCHER, max_header_bytes=1 << 20)
    got = (
        exposure.visible_total,
        exposure.visible_internal,
        exposure.visible_external,
        exposure.external_domains,
        exposure.unparseable,
    )
    assert got == (total, internal, external, domains, unparseable)
    assert exposure.visible_total == exposure.visible_internal + exposure.visible_external


def test_at_least_sixty_cases() -> None:
    assert len(CASES) >= 60
    assert len({case[0] for case in CASES}) == len(CASES)
