"""The rewrite action: only the visible recipient headers change, byte for byte."""

from __future__ import annotations

import pytest

from relay.actions import rewrite_message, tag_message
from relay.settings import Action
from tests.helpers.actions import MATCHER, exposure_of, field_list, make_verdict, parsed

BODY = b"Hello all,\r\n\r\nsee you =E9 there.\r\n-- \r\nAnn\r\n"
ORIGINAL = (
    b"Received: from mua.example.org ([192.0.2.1])\r\n\tby mx.example.org; Tue, 1 Jul 2025\r\n"
    b"From: Ann <ann@example.org>\r\n"
    b"To: Bob Internal <bob@example.org>, guest1@example.com,\r\n"
    b'  =?utf-8?q?J=C3=B6rg_G=C3=A4st?= <joerg@example.net>, "Carol, HR" <carol@hr.example.org>\r\n'
    b"Cc: dave@example.com, erin@example.net\r\n"
    b"Subject: =?utf-8?q?Willkommen_=E2=80=93_training?=\r\n =?utf-8?q?_week?=\r\n"
    b"Message-ID: <abc123@example.org>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n" + BODY
)


def test_only_to_and_cc_change_header_by_header() -> None:
    result = rewrite_message(parsed(ORIGINAL), MATCHER)
    before, after = field_list(ORIGINAL), field_list(result.message)
    assert after[0] == ("x-ccguard-action", b" rewrite\r\n")
    after = after[1:]
    expected = [
        (name, b' Bob Internal <bob@example.org>, "Carol, HR" <carol@hr.example.org>\r\n')
        if name == "to"
        else (name, raw)
        for name, raw in before
        if name != "cc"
    ]
    assert after == expected
    assert result.message.endswith(b"\r\n\r\n" + BODY)
    assert result.removed == 4
    assert result.dkim_broken is False
    exposure = exposure_of(result.message)
    assert exposure.visible_external == 0
    assert set(exposure.internal_addresses) == {"bob@example.org", "carol@hr.example.org"}


def test_encoded_word_display_names_of_kept_addresses_stay_as_written() -> None:
    msg = (
        b"From: ann@example.org\r\n"
        b"To: =?utf-8?b?SsO2cmc=?= <joerg@example.org>, =?utf-8?q?X?= <x@example.com>\r\n"
        b"Cc: =?iso-8859-1?q?Ren=E9?= <rene@example.org>\r\n"
        b"\r\nbody\r\n"
    )
    out = rewrite_message(parsed(msg), MATCHER).message
    assert b"\r\nTo: =?utf-8?b?SsO2cmc=?= <joerg@example.org>\r\n" in out
    # Cc had nothing external: kept byte for byte.
    assert b"\r\nCc: =?iso-8859-1?q?Ren=E9?= <rene@example.org>\r\n" in out


def test_everyone_external_leaves_undisclosed_recipients_and_no_cc() -> None:
    msg = (
        b"From: ann@example.org\r\nTO: a@example.com\r\nCc: b@example.com\r\n"
        b"Subject: x\r\nTo: c@example.net\r\n\r\nbody"
    )
    out = rewrite_message(parsed(msg), MATCHER).message
    assert out == (
        b"X-CCGuard-Action: rewrite\r\nFrom: ann@example.org\r\n"
        b"TO: undisclosed-recipients:;\r\nSubject: x\r\n\r\nbody"
    )


def test_resent_headers_are_filtered_and_dropped_when_empty() -> None:
    msg = (
        b"Resent-From: ann@example.org\r\nResent-To: a@example.com, zoe@example.org\r\n"
        b"Resent-Cc: c@example.net\r\nFrom: x@example.org\r\nTo: y@example.org\r\n\r\n"
    )
    out = rewrite_message(parsed(msg), MATCHER).message
    assert field_list(out)[1:] == [
        ("resent-from", b" ann@example.org\r\n"),
        ("resent-to", b" zoe@example.org\r\n"),
        ("from", b" x@example.org\r\n"),
        ("to", b" y@example.org\r\n"),
    ]


def test_lf_line_endings_arrive_as_crlf() -> None:
    # Normalised on receipt: the rewrite of an LF-only message is the rewrite
    # of the same message with CRLF, body included.
    msg = ORIGINAL.replace(b"\r\n", b"\n")
    out = rewrite_message(parsed(msg), MATCHER).message
    assert out == rewrite_message(parsed(ORIGINAL), MATCHER).message
    assert out.endswith(b"\r\n\r\n" + BODY)
    assert exposure_of(out).visible_external == 0


def test_unparseable_tokens_count_as_external_and_go() -> None:
    msg = b"To: ann@example.org, <<bad@example.com, ;;@@x@example.net\r\n\r\n"
    result = rewrite_message(parsed(msg), MATCHER)
    assert exposure_of(msg).unparseable > 0
    assert exposure_of(result.message).visible_total == 1
    assert b"example.com" not in result.message and b"example.net" not in result.message


def test_display_name_showing_an_external_address_is_reduced_to_the_address() -> None:
    msg = b'To: "bob@example.com" <ann@example.org>, x@example.net\r\n\r\n'
    out = rewrite_message(parsed(msg), MATCHER).message
    assert out == b"X-CCGuard-Action: rewrite\r\nTo: ann@example.org\r\n\r\n"


def test_long_result_is_folded_within_78_characters() -> None:
    internal = [f"Person Number {i} <person{i}@example.org>" for i in range(40)]
    external = [f"guest{i}@example.com" for i in range(300)]
    msg = b"To: " + ", ".join(internal + external).encode() + b"\r\n\r\nbody"
    out = rewrite_message(parsed(msg), MATCHER).message
    head = out.split(b"\r\n\r\n")[0]
    assert all(len(line) <= 78 for line in head.split(b"\r\n"))
    assert len(exposure_of(out).internal_addresses) == 40
    assert exposure_of(out).visible_external == 0


def test_an_item_longer_than_998_is_broken_at_its_spaces() -> None:
    name = " ".join(["word"] * 300)
    msg = f"To: {name} <ann@example.org>, x@example.com\r\n\r\n".encode()
    out = rewrite_message(parsed(msg), MATCHER).message
    assert all(len(line) <= 998 for line in out.split(b"\r\n"))
    assert exposure_of(out).internal_addresses == ("ann@example.org",)


def test_dkim_covering_to_is_reported_broken_and_tagged() -> None:
    dkim = (
        b"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=s1;\r\n"
        b"\th=From:To:Subject; bh=x; b=y\r\n"
    )
    msg = dkim + b"From: ann@example.org\r\nTo: a@example.com, b@example.org\r\n\r\nbody"
    result = rewrite_message(parsed(msg), MATCHER)
    assert result.dkim_broken is True
    assert result.message.startswith(
        b"X-CCGuard-Action: rewrite\r\nX-CCGuard-DKIM: broken-by-rewrite\r\n" + dkim
    )


def test_dkim_not_covering_a_changed_header_is_not_broken() -> None:
    dkim = b"DKIM-Signature: v=1; h=from:subject:cc; b=y\r\n"
    msg = dkim + b"From: ann@example.org\r\nTo: a@example.com\r\nCc: b@example.org\r\n\r\n"
    result = rewrite_message(parsed(msg), MATCHER)
    assert result.dkim_broken is False
    assert b"X-CCGuard-DKIM" not in result.message


def test_forged_tags_are_removed_and_ours_appear_once() -> None:
    msg = (
        b"X-CCGuard-Action: pass\r\nFrom: ann@example.org\r\nx-ccguard-rule: trusted\r\n"
        b"To: a@example.com\r\n\r\nbody\r\nX-CCGuard-Action: in the body stays\r\n"
    )
    out = rewrite_message(parsed(msg), MATCHER).message
    names = [name for name, _ in field_list(out)]
    assert names == ["x-ccguard-action", "from", "to"]
    assert out.endswith(b"body\r\nX-CCGuard-Action: in the body stays\r\n")


def test_nothing_external_changes_nothing_but_the_tags() -> None:
    msg = b"From: ann@example.org\r\nTo: Bob\r\n <bob@example.org>\r\n\r\nbody"
    out = rewrite_message(parsed(msg), MATCHER).message
    assert out == b"X-CCGuard-Action: rewrite\r\n" + msg


def test_raw_utf8_display_name_is_kept_byte_exact() -> None:
    msg = "To: Jörg Müller <joerg@example.org>, ext@example.com\r\n\r\n".encode()
    out = rewrite_message(parsed(msg), MATCHER).message
    assert "To: Jörg Müller <joerg@example.org>\r\n".encode() in out


def test_tag_action_adds_counts_only_and_keeps_the_rest() -> None:
    verdict = make_verdict(Action.TAG, monitor=True, matched=Action.QUARANTINE)
    out = tag_message(parsed(ORIGINAL), verdict)
    assert out == (
        b"X-CCGuard-Action: monitor; would=quarantine\r\n"
        b"X-CCGuard-Rule: bulk-external\r\n"
        b"X-CCGuard-Exposure: visible_external=312; external_domains=41; visible_total=320;"
        b" unparseable=0\r\n" + ORIGINAL
    )


@pytest.mark.parametrize("changed", ["Cc", "Resent-To", "Resent-Cc"])
def test_dkim_covering_only_a_changed_cc_or_resent_field_is_tagged(changed: str) -> None:
    # To stays as it was: only ``changed`` loses an address, and only it is in h=.
    dkim = (
        f"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=s1;\r\n"
        f"\th=From : Subject : {changed.upper()}; bh=x; b=y\r\n"
    ).encode()
    rest = (
        f"From: ann@example.org\r\nTo: bob@example.org\r\n"
        f"{changed}: guest@example.com, carol@example.org\r\nSubject: hi\r\n\r\nbody\r\n"
    ).encode()
    result = rewrite_message(parsed(dkim + rest), MATCHER)
    assert result.dkim_broken is True and result.removed == 1
    assert result.message == (
        b"X-CCGuard-Action: rewrite\r\nX-CCGuard-DKIM: broken-by-rewrite\r\n" + dkim
        + rest.replace(b"guest@example.com, ", b"")
    )  # fmt: skip


@pytest.mark.parametrize("changed", ["Cc", "Resent-To", "Resent-Cc"])
def test_dkim_not_covering_the_changed_cc_or_resent_field_is_not_tagged(changed: str) -> None:
    dkim = b"DKIM-Signature: v=1; d=example.org; h=from:to:subject; bh=x; b=y\r\n"
    rest = (
        f"From: ann@example.org\r\nTo: bob@example.org\r\n"
        f"{changed}: guest@example.com, carol@example.org\r\nSubject: hi\r\n\r\nbody\r\n"
    ).encode()
    result = rewrite_message(parsed(dkim + rest), MATCHER)
    assert result.dkim_broken is False and result.removed == 1
    assert b"X-CCGuard-DKIM" not in result.message
