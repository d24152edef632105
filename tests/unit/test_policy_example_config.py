"""The shipped example config loads, documents every key and behaves as described."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from relay.envelope import Envelope
from relay.inspect import DomainMatcher, inspect_message
from relay.policy import evaluate
from relay.settings import Action, RuleSettings, Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "ccguard.example.toml"


def test_every_settings_key_is_documented() -> None:
    text = EXAMPLE.read_text()
    for section, info in Settings.model_fields.items():
        assert f"[{section}]" in text
        model = info.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        for key, field in model.model_fields.items():
            name = field.alias or key
            if (section, key) == ("policy", "rules"):
                assert "[[policy.rules]]" in text
                continue
            sub = field.annotation
            if isinstance(sub, type) and issubclass(sub, BaseModel):  # e.g. [smtp.auth]
                assert re.search(rf"^#? ?\[{section}\.{key}\]", text, re.M), f"[{section}.{key}]"
                for subkey in sub.model_fields:
                    assert re.search(rf"^#? ?{subkey} = ", text, re.M), f"{section}.{key}.{subkey}"
                continue
            assert re.search(rf"^#? ?{name} = ", text, re.M), f"{section}.{name} missing"
    for key in RuleSettings.model_fields:
        assert re.search(rf"^#? ?{key} = ", text, re.M), f"policy.rules[].{key} missing"


def test_example_policy_thresholds() -> None:
    settings = load_settings(EXAMPLE)
    enforce = settings.policy.model_copy(update={"mode": "enforce"})
    matcher = DomainMatcher(settings.organisation.internal_domains)
    sender = Envelope("hr@example.org", ())

    def action(n: int) -> Action:
        to = ", ".join(f"p{i}@example.com" for i in range(n))
        exposure = inspect_message(f"To: {to}\r\n\r\n".encode(), matcher, max_header_bytes=1 << 20)
        return evaluate(exposure, sender, enforce).action

    assert settings.policy.mode == "monitor"
    assert [action(n) for n in (4, 5, 9, 10, 99, 100)] == [
        Action.PASS,
        Action.TAG,
        Action.TAG,
        Action.QUARANTINE,
        Action.QUARANTINE,
        Action.REJECT,
    ]
