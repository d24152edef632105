"""Every reply ccguard gives itself is in the README's reply table."""

from __future__ import annotations

from pathlib import Path

from relay import codes

README = Path(__file__).resolve().parents[2] / "README.md"
# The policy's own rejections are explained with the actions ("## Actions").
ELSEWHERE = {"REJECT_EXPOSURE", "REJECT_UNCHECKABLE"}


def _reply_table() -> str:
    text = README.read_text()
    start = text.index("### Replies ccguard gives itself")
    return text[start : text.index("\n## ", start)]


def test_every_refusal_and_deferral_is_in_the_readme_reply_table() -> None:
    table = _reply_table()
    missing = []
    for name in codes.__all__:
        reply = getattr(codes, name)
        if not isinstance(reply, codes.Reply) or reply.is_success or name in ELSEWHERE:
            continue
        # Code, status and the first words, as a client sees them.
        shown = f"`{reply.code} {reply.status} " + " ".join(reply.text.split()[:3])
        if shown not in table:
            missing.append(f"{name}: {shown}")
    assert missing == []
