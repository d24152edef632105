"""``ccguard check``: run inspection and policy over saved messages; sends nothing."""

from __future__ import annotations

import argparse
import json
import mailbox
import os
import re
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TextIO

from relay.cli.config import load_or_report
from relay.envelope import Envelope
from relay.inspect import (
    CalendarLimits,
    DomainMatcher,
    ParsedMessage,
    inspect_message,
    parse_address_header,
    parse_message,
)
from relay.inspect.encoded_words import decode_encoded_words
from relay.inspect.headers import decode_header_value
from relay.policy import Verdict, evaluate
from relay.settings import Settings

__all__ = ["register", "run_check"]

EXIT_OK = 0
EXIT_INPUT = 2
TOP_N = 10
_ADDRESS_LIKE = re.compile(r"[^\s<>()\[\],;:\"]+@[^\s<>()\[\],;:\"]+")


@dataclass(slots=True)
class _Checker:
    """Settings turned into what evaluating one message needs."""

    settings: Settings
    sender: str | None
    matcher: DomainMatcher = field(init=False)
    calendar: CalendarLimits = field(init=False)

    def __post_init__(self) -> None:
        self.matcher = DomainMatcher(self.settings.organisation.internal_domains)
        inspect = self.settings.inspect
        self.calendar = CalendarLimits(
            inspect.max_calendar_bytes, inspect.max_mime_parts, inspect.max_mime_depth
        )

    @property
    def read_limit(self) -> int:
        # One byte past the header cap tells "over the cap" from "exactly at it"; the
        # body (calendar parts) is read as far as the relay would accept a message.
        inspect = self.settings.inspect
        return max(inspect.max_header_bytes + 1, self.settings.smtp.max_message_size)

    def verdict(self, message: ParsedMessage) -> Verdict:
        """The verdict on ``message``, parsed as the SMTP front parses it."""
        exposure = inspect_message(
            message,
            self.matcher,
            max_header_bytes=self.settings.inspect.max_header_bytes,
            calendar_limits=self.calendar,
        )
        sender = self.sender if self.sender is not None else _sender_of(message)
        return evaluate(exposure, Envelope(mail_from=sender, rcpt_tos=()), self.settings.policy)


def _header_values(message: ParsedMessage, wanted: str) -> list[str]:
    return [decode_header_value(raw) for raw in message.values(wanted)]


def _sender_of(message: ParsedMessage) -> str:
    """Envelope sender to assume: Return-Path, else the first From address."""
    for name in ("return-path", "sender", "from"):
        for value in _header_values(message, name):
            boxes = parse_address_header(value).mailboxes
            if boxes:
                return boxes[0].address
    return ""


def _safe_text(value: str, limit: int = 80) -> str:
    """Decoded, single-line text with anything address-like masked."""
    text = " ".join(decode_encoded_words(value).split())
    text = _ADDRESS_LIKE.sub("[address]", text)
    text = text.encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _record(name: str, verdict: Verdict) -> dict[str, Any]:
    return {
        "file": name,
        "action": verdict.action.value,
        "rule": verdict.rule,
        "matched_action": verdict.matched_action.value if verdict.matched_action else None,
        "monitor": verdict.monitor,
        "reason": verdict.reason,
        "calendar_fallback": str(verdict.calendar_fallback) if verdict.calendar_fallback else None,
        "exposure": verdict.exposure.counts(),
    }


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _line(name: str, verdict: Verdict) -> str:
    action = verdict.action.value
    enforced = verdict.matched_action
    if verdict.monitor and enforced is not None and enforced != verdict.action:
        action += f" (enforced: {enforced.value})"
    return f"{name}: {action} — {verdict.reason}{_calendar_note(verdict)}"


def _calendar_note(verdict: Verdict) -> str:
    exposure = verdict.exposure
    if not (exposure.calendar or exposure.calendar_truncated):
        return ""
    note = (
        f" [calendar invitation: {exposure.calendar_attendees_external} external, "
        f"{exposure.calendar_attendees_internal} internal attendees"
    )
    return note + (", not fully read]" if exposure.calendar_truncated else "]")


def _read(name: str, limit: int) -> bytes:
    if name == "-":
        stream: BinaryIO = sys.stdin.buffer
        data = stream.read(limit)
        while stream.read(1 << 16):  # drain the rest so the writer is not blocked
            pass
        return data
    with open(name, "rb") as fh:
        return fh.read(limit)


def _check_files(checker: _Checker, names: list[str], as_json: bool, out: TextIO) -> int:
    code = EXIT_OK
    for name in names:
        try:
            data = _read(name, checker.read_limit)
        except OSError as exc:
            print(f"ccguard check: cannot read {name}: {exc.strerror or exc}", file=sys.stderr)
            code = EXIT_INPUT
            continue
        verdict = checker.verdict(parse_message(data))
        label = "<stdin>" if name == "-" else name
        print(json.dumps(_record(label, verdict)) if as_json else _line(label, verdict), file=out)
    return code


@dataclass(slots=True)
class _Impact:
    """Running totals for the mailbox impact report."""

    total: int = 0
    passed: int = 0
    unreadable: int = 0
    by_rule: Counter[tuple[str, str]] = field(default_factory=Counter)
    largest: list[tuple[int, int, dict[str, Any]]] = field(default_factory=list)

    def add(self, key: str, message: ParsedMessage, verdict: Verdict) -> None:
        self.total += 1
        if verdict.rule is None:
            self.passed += 1
        else:
            acted = verdict.matched_action or verdict.action
            self.by_rule[(verdict.rule, acted.value)] += 1
        exposure = verdict.exposure
        if exposure.visible_external:
            info = _describe_message(key, message, verdict)
            self.largest.append((exposure.visible_external, self.total, info))
            self.largest.sort(key=lambda item: (-item[0], item[1]))
            del self.largest[TOP_N:]


def _describe_message(key: str, message: ParsedMessage, verdict: Verdict) -> dict[str, Any]:
    def first(name: str) -> str:
        values = _header_values(message, name)
        return _safe_text(values[0]) if values else ""

    return {
        "key": key,
        "date": first("date"),
        "subject": first("subject"),
        "rule": verdict.rule or "-",
        "visible_external": verdict.exposure.visible_external,
        "external_domains": verdict.exposure.external_domains,
        "calendar_attendees_external": verdict.exposure.calendar_attendees_external,
    }


class _Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, total: int) -> None:
        self.total = max(total, 1)
        self.enabled = sys.stderr.isatty()
        self.step = max(self.total // 200, 1)

    def update(self, done: int) -> None:
        if self.enabled and (done % self.step == 0 or done == self.total):
            filled = 30 * done // self.total
            bar = "#" * filled + "." * (30 - filled)
            print(f"\r[{bar}] {done}/{self.total}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled:
            print(file=sys.stderr, flush=True)


def _open_mailbox(args: argparse.Namespace) -> tuple[str, mailbox.Mailbox[Any]]:
    if args.mbox is not None:
        if not os.path.isfile(args.mbox) or not os.access(args.mbox, os.R_OK):
            raise OSError(f"{args.mbox} is not a readable mbox file")
        return args.mbox, mailbox.mbox(args.mbox, factory=None, create=False)
    path = args.maildir
    if not all(os.path.isdir(os.path.join(path, sub)) for sub in ("cur", "new")):
        raise OSError(f"{path} is not a maildir (no cur/ and new/ folders)")
    return path, mailbox.Maildir(path, factory=None, create=False)


def _iter_mailbox(box: mailbox.Mailbox[Any], impact: _Impact) -> Iterator[tuple[str, bytes]]:
    """(label, bytes) per message: an mbox message is labelled by its 1-based
    position in the file, a maildir message by its file name."""
    keys = sorted(box.keys())
    progress = _Progress(len(keys))
    by_position = isinstance(box, mailbox.mbox)
    for done, key in enumerate(keys, 1):
        try:
            yield str(done) if by_position else str(key), box.get_bytes(key)
        except (OSError, KeyError):
            impact.unreadable += 1
        progress.update(done)
    progress.close()


def _check_mailbox(checker: _Checker, args: argparse.Namespace, out: TextIO) -> int:
    try:
        path, box = _open_mailbox(args)
        impact = _Impact()
        for key, data in _iter_mailbox(box, impact):
            message = parse_message(data)  # LF-only files normalised like SMTP input
            verdict = checker.verdict(message)
            impact.add(key, message, verdict)
            if args.json:
                print(json.dumps(_record(f"{path}#{key}", verdict)), file=out)
    except BrokenPipeError:
        raise  # stdout closed by the reader (e.g. `| head`): not a mailbox problem
    except (OSError, mailbox.Error) as exc:
        print(f"ccguard check: cannot read mailbox: {exc}", file=sys.stderr)
        return EXIT_INPUT
    if args.json:
        print(json.dumps({"summary": _summary(path, impact)}), file=out)
    else:
        _print_report(path, impact, checker.settings.policy.mode, out)
    return EXIT_OK


def _summary(path: str, impact: _Impact) -> dict[str, Any]:
    return {
        "mailbox": path,
        "messages": impact.total,
        "would_pass": impact.passed,
        "unreadable": impact.unreadable,
        "by_rule": [
            {"rule": rule, "action": action, "messages": count}
            for (rule, action), count in impact.by_rule.most_common()
        ],
        "largest": [info for _, _, info in impact.largest],
    }


def _print_report(path: str, impact: _Impact, mode: str, out: TextIO) -> None:
    total = _plural(impact.total, "message")
    print(f"Impact report for {path}: {total} (policy mode: {mode})", file=out)
    print(f"  would pass: {impact.passed}", file=out)
    for (rule, action), count in impact.by_rule.most_common():
        print(f"  rule {rule} ({action}): {count}", file=out)
    if impact.unreadable:
        print(f"  unreadable: {impact.unreadable}", file=out)
    if not impact.largest:
        print("No message shows any external address.", file=out)
        return
    print(f"Largest exposures (top {len(impact.largest)}):", file=out)
    for count, _, info in impact.largest:
        domains = "domain " if info["external_domains"] == 1 else "domains"
        print(
            f"  {count:>6} external / {info['external_domains']:>4} {domains}"
            f"  rule {info['rule']}  #{info['key']}  {info['date'] or '(no date)'}"
            f"  {info['subject'] or '(no subject)'}",
            file=out,
        )


def run_check(args: argparse.Namespace) -> int:
    """Carry out ``ccguard check``; returns the exit code."""
    if not args.files and args.mbox is None and args.maildir is None:
        print(
            "ccguard check: give FILE..., - (stdin), --mbox FILE or --maildir DIR", file=sys.stderr
        )
        return EXIT_INPUT
    settings = load_or_report(args.config)
    if settings is None:
        return EXIT_INPUT
    checker = _Checker(settings, args.sender)
    code = _check_files(checker, args.files, args.json, sys.stdout)
    if args.mbox is not None or args.maildir is not None:
        code = max(code, _check_mailbox(checker, args, sys.stdout))
    return code


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add ``check``."""
    parser = subparsers.add_parser(
        "check",
        parents=[common],
        help="show what the policy would do with saved messages (sends nothing)",
        description="Inspect .eml files, an mbox or a maildir and print the policy verdict. "
        "Exit status is 0 even when messages would be caught, 2 on unreadable input "
        "or an invalid configuration, 141 when the reader of the output went away "
        "(e.g. | head).",
    )
    parser.add_argument("files", nargs="*", metavar="FILE", help=".eml file, or - for stdin")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument(
        "--sender", metavar="ADDR", help="envelope sender to assume (default: Return-Path/From)"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--mbox",
        metavar="FILE",
        help="impact report over an mbox file; messages are shown as #N, N counting from 1",
    )
    source.add_argument(
        "--maildir",
        metavar="DIR",
        help="impact report over a maildir; messages are shown by file name, as #<file name>",
    )
    parser.set_defaults(func=run_check)
