"""The shipped example policy passes ordinary mail the MIME walk cannot finish.

``ccguard check`` with config/ccguard.example.toml: 300 attachments or five
nested forwards are not held by ``hold-unreadable-calendar``; the same
message with an invitation past the bound still is.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.calendar import attendee_lines, ics, invitation, multipart, part
from tests.helpers.process import ROOT, run_ccguard
from tests.unit.test_inspect_calendar_bounds import _forwards, _images

EXAMPLE = ROOT / "config" / "ccguard.example.toml"


def _check(tmp_path: Path, name: str, message: bytes) -> dict[str, object]:
    eml = tmp_path / name
    eml.write_bytes(message)
    result = run_ccguard("check", "--json", "--config", str(EXAMPLE), str(eml))
    assert result.returncode == 0, result.stderr
    record: dict[str, object] = json.loads(result.stdout)
    return record


def test_example_policy_passes_many_attachments_and_deep_forwards(tmp_path: Path) -> None:
    photos = invitation(multipart("mixed", "BB", _images(300)), to="Bob <bob@example.org>")
    forwards = invitation(_forwards(part("original", "text/plain"), 5), to="bob@example.org")
    for name, message in (("photos.eml", photos), ("forwards.eml", forwards)):
        record = _check(tmp_path, name, message)
        assert (record["action"], record["rule"]) == ("pass", None), (name, record)


def test_example_policy_holds_an_invitation_past_the_walk_bound(tmp_path: Path) -> None:
    calendar = part(ics(attendee_lines(2)))
    message = invitation(multipart("mixed", "BB", [*_images(300), calendar]), to="bob@example.org")
    record = _check(tmp_path, "late-invite.eml", message)
    assert record["rule"] == "hold-unreadable-calendar", record
