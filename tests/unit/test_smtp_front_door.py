"""TLS/AUTH settings, who may relay, sender binding and the trace header (no network)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from relay import codes
from relay.envelope import Envelope
from relay.settings import Settings
from relay.smtp.access import RelayAccess, SenderBinding
from relay.smtp.trace import received_header

PAIR = {"tls_cert": "/etc/ccguard/cert.pem", "tls_key": "/etc/ccguard/key.pem"}


def smtp(**values: Any) -> Settings:
    return Settings(smtp=values)


def problem(**values: Any) -> str:
    with pytest.raises(ValidationError) as err:
        smtp(**values)
    return str(err.value.errors()[0]["msg"]).removeprefix("Value error, ")


def test_starttls_defaults_to_offer_with_a_certificate_and_off_without() -> None:
    assert smtp().smtp.starttls == "off"
    assert smtp(**PAIR).smtp.starttls == "offer"
    assert smtp(**PAIR, starttls="off").smtp.starttls == "off"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"starttls": "offer"}, 'starttls = "offer" needs tls_cert and tls_key'),
        ({"starttls": "required"}, 'starttls = "required" needs tls_cert and tls_key'),
        ({"tls_cert": "/c.pem"}, "tls_cert and tls_key must be set together"),
        ({"tls_listen": "127.0.0.1:10465"}, "tls_listen needs tls_cert and tls_key"),
        ({"auth": {"users_file": "/u.json"}}, "auth.users_file: AUTH is offered only after TLS"),
        ({**PAIR, "starttls": "off", "auth": {"users_file": "/u.json"}}, "AUTH is offered only"),
        ({"auth": {"required": True}}, "required and sender_patterns need users_file"),
    ],
)
def test_inconsistent_tls_and_auth_settings_are_config_errors(
    values: dict[str, Any], message: str
) -> None:
    assert message in problem(**values)


def test_auth_in_clear_or_over_implicit_tls_only_is_allowed() -> None:
    assert smtp(auth={"users_file": "/u.json", "allow_plaintext": True}).smtp.auth.allow_plaintext
    implicit = smtp(**PAIR, starttls="off", tls_listen="127.0.0.1:465", auth={"users_file": "/u"})
    assert implicit.smtp.tls_enabled


def test_access_network_or_auth() -> None:
    outside = smtp(
        allowed_networks=["10.0.0.0/8"], auth={"users_file": "/u", "allow_plaintext": True}
    )
    access = RelayAccess(outside.smtp)
    assert not access.refused_at_connect("192.0.2.7")  # greeted, so it can log in
    assert access.mail_refusal("192.0.2.7", None, "a@example.org") == codes.AUTH_REQUIRED
    assert access.mail_refusal("192.0.2.7", "app1", "a@example.org") is None
    assert access.mail_refusal("10.1.2.3", None, "a@example.org") is None
    without_auth = RelayAccess(smtp(allowed_networks=["10.0.0.0/8"]).smtp)
    assert without_auth.refused_at_connect("192.0.2.7")
    required = smtp(auth={"users_file": "/u", "required": True, "allow_plaintext": True})
    assert RelayAccess(required.smtp).mail_refusal("127.0.0.1", None, "") == codes.AUTH_REQUIRED


def test_sender_binding_own_entry_then_star_then_nothing() -> None:
    binding = SenderBinding({"app1": ["noreply@example.org", "<>"], "*": ["*@*.example.org"]})
    assert binding.allows("app1", "noreply@" + "example".title() + "." + "org".upper())
    assert binding.allows("app1", "")  # the null sender, by "<>"
    assert not binding.allows("app1", "ops@mail.example.org")  # own entry, "*" not added
    assert binding.allows("app2", "ops@mail.example.org")
    assert not binding.allows("app2", "ops@example.org")
    assert not SenderBinding({"app1": ["*"]}).allows("app2", "x@example.org")
    assert SenderBinding({}).allows("anyone", "x@example.net")


@pytest.mark.parametrize(
    ("tls", "user", "utf8", "protocol"),
    [
        ("", None, False, "ESMTP"),
        ("TLSv1.3", None, False, "ESMTPS"),
        ("TLSv1.2", "app1", False, "ESMTPSA"),
        ("", "app1", False, "ESMTPA"),
        ("TLSv1.3", "app1", True, "UTF8SMTPSA"),
    ],
)
def test_received_with_keyword_follows_rfc_3848(
    tls: str, user: str | None, utf8: bool, protocol: str
) -> None:
    env = Envelope(
        "a@example.org", ("b@example.com",), mail_options=("SMTPUTF8",) if utf8 else (),
        client_ip="192.0.2.7", client_helo="app.example.org", queue_id="Q1",
        auth_user=user, tls_version=tls,
    )  # fmt: skip
    header = received_header(env, hostname="ccguard.test", now=datetime(2026, 1, 1, tzinfo=UTC))
    assert f"(ccguard) with {protocol} id Q1;".encode() in header
    assert b"app1" not in header  # the AUTH user is not disclosed to recipients
