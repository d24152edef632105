#!/usr/bin/env python3
"""What the milter front costs a Postfix client: seconds per message at end of DATA.

One private Postfix (tests/helpers/postfix.py; needs root and the Debian package) relays
to a recording aiosmtpd sink.  A client sends ``--messages`` messages over one SMTP
connection, one after the other, and the time from MAIL FROM to the 250 is measured:

* ``none``     no milter: Postfix alone (the reference);
* ``pass``     ``smtpd_milters`` → ccguard, a message no rule matches (pass: forged tags
               are looked for, nothing is edited);
* ``none-6``   no milter, 6 recipients (the reference for ``rewrite``);
* ``rewrite``  6 external recipients and a rewrite rule (chgheader edits).

Rounds interleave the three so load on the machine hits each alike; the figure is the
median per message of each round, and the ratio is against
the no-milter case with as many recipients in the same round.
ccguard runs in this process (one event loop, as ``ccguard milter`` would).
"""

from __future__ import annotations

import argparse
import asyncio
import smtplib
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.milter import externals, message, milter_main_cf
from tests.helpers.postfix import instance_dir, require_postfix, write_instance
from tests.helpers.process import free_port
from tests.helpers.relay import running_relay, settings_for
from tests.helpers.upstream import RecordingUpstream

RULES = {"rules": [{"name": "hide", "min_visible_external": 3, "action": "rewrite"}]}


def send_many(port: int, data: bytes, rcpts: list[str], count: int) -> list[float]:
    """Seconds from MAIL FROM to the 250 after DATA, per message."""
    took = []
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo("bench.example.org")
        for _ in range(count):
            started = time.perf_counter()
            client.sendmail("alice@example.org", rcpts, data)
            took.append(time.perf_counter() - started)
    return took


async def main(args: argparse.Namespace) -> int:
    require_postfix()
    sink = await RecordingUpstream().start()
    milter_port = free_port()
    plain = write_instance(
        instance_dir(), smtp_port=free_port(), relayhost=f"[127.0.0.1]:{sink.port}"
    )
    guarded = write_instance(
        instance_dir(),
        smtp_port=free_port(),
        relayhost=f"[127.0.0.1]:{sink.port}",
        main=milter_main_cf(f"inet:127.0.0.1:{milter_port}"),
    )
    settings = settings_for(
        sink.port,
        smtp={"listen": ""},
        milter={"listen": f"inet:127.0.0.1:{milter_port}"},
        policy=RULES,
    )
    cases = {
        "none": (plain, message(1, "bench-none"), externals(1)),
        "pass": (guarded, message(1, "bench-pass"), externals(1)),
        "none-6": (plain, message(6, "bench-none6"), externals(6)),
        "rewrite": (guarded, message(6, "bench-rewrite"), externals(6)),
    }
    results: dict[str, list[float]] = {name: [] for name in cases}
    try:
        async with running_relay(settings):
            for instance in (plain, guarded):
                await asyncio.to_thread(instance.start)
            for _ in range(args.rounds):
                for name, (instance, data, rcpts) in cases.items():
                    took = await asyncio.to_thread(
                        send_many, instance.smtp_port, data, rcpts, args.messages
                    )
                    results[name].append(statistics.median(took))
    finally:
        for instance in (plain, guarded):
            instance.stop()
            instance.discard()
        await sink.stop()
    print(f"{args.rounds} rounds x {args.messages} messages per case, median ms per message")
    for name, medians in results.items():
        reference = results["none-6" if name in ("none-6", "rewrite") else "none"]
        ratios = [m / n for m, n in zip(medians, reference, strict=True)]
        print(
            f"{name:8s} median {statistics.median(medians) * 1000:7.2f} ms "
            f"(rounds {', '.join(f'{m * 1000:.2f}' for m in medians)}), "
            f"x{statistics.median(ratios):.2f} of {'none-6' if name == 'rewrite' else 'none'}"
        )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    sys.exit(asyncio.run(main(parser.parse_args())))
