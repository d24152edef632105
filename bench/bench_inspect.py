"""Timings of header inspection (run: python bench/bench_inspect.py).

Compares ccguard's own tokenizer with the standard library's parsers on the
same To header and times the whole inspect + policy path.  Prints the best of
several runs for each, in milliseconds.

``--ordinary [LOOPS]`` only times ``inspect_message`` on everyday mail without
a calendar (plain text, multipart/alternative, a 10 MiB attachment) and
``--invitations [LOOPS]`` on calendar invitations, in microseconds per message; it uses only the
``inspect_message`` call that every version of ccguard has, so the same script
measures a checkout from before and after the calendar scan.
"""

from __future__ import annotations

import base64
import email.policy
import sys
import time
from collections.abc import Callable
from email import message_from_bytes
from email._header_value_parser import get_address_list  # type: ignore[attr-defined]
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from relay.envelope import Envelope
from relay.inspect import DomainMatcher, inspect_message, parse_address_header
from relay.policy import evaluate
from relay.settings import PolicySettings

MATCHER = DomainMatcher(["example.org", "*.corp.example.org"])
ENVELOPE = Envelope("a@example.org", ())
POLICY = PolicySettings.model_validate(
    {"rules": [{"name": "hold", "action": "quarantine", "min_visible_external": 15}]}
)


HOSTILE = {
    "unclosed comments ((((": "(",
    'escaped quotes "\\"\\"': '\\"',
    "escaped brackets [\\[\\[": "[\\",
    "one long atom, no @": "a",
    "a@a@a@...": "a@",
    "commas": ",",
    "angle brackets <<<<": "<",
    "bare CRs": "\r",
    "junk lines , a@b.example<CR>": ", a@b.example\r",
    'names showing "a@b" <c@d>': '"a@b" <c@d>,',
    "comments (a@b)": "(a@b)",
}


def to_header(n: int) -> str:
    """n mailboxes with quoted display names containing commas, folded."""
    return ",\r\n ".join(
        f'"Trainee {i}, Cohort {i % 9}" <t{i}@d{i % 300}.example.com>' for i in range(n)
    )


def message(n: int) -> bytes:
    return (
        f"From: a@example.org\r\nTo: {to_header(n)}\r\nSubject: s\r\n\r\n" + "x" * 1000
    ).encode()


def best_ms(func: Callable[[], object], runs: int = 7) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def main() -> None:
    print(f"python {sys.version.split()[0]}; best of 7 runs, milliseconds")
    print(
        f"{'addresses':>9}  {'ccguard parse':>13}  {'get_address_list':>16}  "
        f"{'policy.default':>14}  {'inspect+policy':>14}"
    )
    for n in (100, 1000, 5000):
        value = to_header(n)
        unfolded = value.replace("\r\n", "")
        raw = message(n)
        ours = best_ms(lambda v=value: parse_address_header(v))
        stdlib = best_ms(lambda v=unfolded: get_address_list(v))
        default = best_ms(
            lambda r=raw: message_from_bytes(r, policy=email.policy.default)["To"].addresses
        )

        def full(r: bytes = raw) -> object:
            return evaluate(inspect_message(r, MATCHER, max_header_bytes=1 << 20), ENVELOPE, POLICY)

        print(f"{n:>9}  {ours:>13.1f}  {stdlib:>16.1f}  {default:>14.1f}  {best_ms(full):>14.1f}")
    broken = ("To: " + ", ".join(f"Name{i} t{i}@d{i}.example.com" for i in range(5000))).encode()
    ms = best_ms(lambda: inspect_message(broken + b"\r\n\r\n", MATCHER, max_header_bytes=1 << 20))
    print(f"5000 unparseable mailboxes (fail-closed token scan): {ms:.1f} ms")
    huge = message(50_000)
    capped = best_ms(lambda: inspect_message(huge, MATCHER, max_header_bytes=1 << 20))
    print(f"50000 addresses (~2.9 MB header) capped at 1 MiB: {capped:.1f} ms")
    print("hostile 1 MiB headers (must stay linear, never hang):")
    for name, unit in HOSTILE.items():
        value = unit * ((1 << 20) // len(unit))
        data = f"To: {value}\r\n\r\n".encode()
        ms = best_ms(lambda d=data: inspect_message(d, MATCHER, max_header_bytes=1 << 21), runs=3)
        print(f"  {name:<28} {ms:8.1f} ms")


def _entity(ctype: str, body: bytes, encoding: str = "7bit") -> bytes:
    return f"Content-Type: {ctype}\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n".encode() + body


def _multipart(subtype: str, parts: list[bytes]) -> bytes:
    body = b"".join(b"--b-" + subtype.encode() + b"\r\n" + p + b"\r\n" for p in parts)
    body += b"--b-" + subtype.encode() + b"--\r\n"
    return f'Content-Type: multipart/{subtype}; boundary="b-{subtype}"\r\n\r\n'.encode() + body


def _ics(attendees: int) -> bytes:
    lines = [
        f'ATTENDEE;CN="Guest {i}";ROLE=REQ-PARTICIPANT;RSVP=TRUE:mailto:g{i}@d{i % 50}.example.com'
        for i in range(attendees)
    ]
    text = "\r\n".join(
        ["BEGIN:VCALENDAR", "METHOD:REQUEST", "BEGIN:VEVENT", "UID:1@example.org",
         "ORGANIZER:mailto:a@example.org", *lines, "END:VEVENT", "END:VCALENDAR", ""]
    )  # fmt: skip
    return base64.encodebytes(text.encode()).replace(b"\n", b"\r\n")


def ordinary_messages() -> dict[str, bytes]:
    """Everyday mail (no calendar) and invitations, each with a 10-address To."""
    head = (
        "From: a@example.org\r\nTo: " + to_header(10) + "\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
    ).encode()
    text = b"Hello,\r\n" + b"x" * 70 * 20 + b"\r\n"
    alternative = _multipart(
        "alternative",
        [_entity("text/plain", text), _entity("text/html", b"<p>" + text * 10 + b"</p>")],
    )
    attachment = base64.encodebytes(bytes(range(256)) * 4096 * 10).replace(b"\n", b"\r\n")
    mixed = _multipart("mixed", [alternative, _entity("application/pdf", attachment, "base64")])
    invite = _multipart(
        "alternative", [_entity("text/plain", text), _entity("text/calendar", _ics(20), "base64")]
    )
    big_invite = _multipart("alternative", [_entity("text/calendar", _ics(1000), "base64")])
    return {
        "text/plain, 1.5 KB body": head + b"Content-Type: text/plain\r\n\r\n" + text,
        "no Content-Type, 1.5 KB body": head + b"\r\n" + text,
        "multipart/alternative, 16 KB": head + alternative,
        "multipart/mixed, 10 MiB PDF": head + mixed,
        "invitation, 20 attendees": head + invite,
        "invitation, 1,000 attendees": head + big_invite,
    }


def ordinary(loops: int, invitations: bool) -> None:
    """Microseconds per ``inspect_message`` call (best of 5 batches of ``loops``)
    on the mail without a calendar, or on the invitations."""
    print(f"python {sys.version.split()[0]}; inspect_message, best of 5 batches, µs/message")
    for name, raw in ordinary_messages().items():
        if name.startswith("invitation") != invitations:
            continue
        count = max(1, loops // (1 + len(raw) // 100_000))

        def batch(r: bytes = raw, n: int = count) -> None:
            for _ in range(n):
                inspect_message(r, MATCHER, max_header_bytes=1 << 20)

        print(f"  {name:<32} {best_ms(batch, runs=5) * 1000 / count:10.1f} µs")


if __name__ == "__main__":
    if sys.argv[1:2] in (["--ordinary"], ["--invitations"]):
        ordinary(int(sys.argv[2]) if len(sys.argv) > 2 else 2000, sys.argv[1] == "--invitations")
    else:
        main()
