# ruff: noqa: F811  (the tests take the imported `cli` fixture as their argument)
"""``ccguard audit list`` and ``ccguard quarantine release|delete`` by filter, as real
subprocesses on the server's SQLite file, with a real upstream down for some messages."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from tests.helpers.admin import EXTERNAL_RCPTS, new_message
from tests.integration.test_admin_cli import ACTOR, Cli, cli  # noqa: F401  (the fixture)

HOUR = 3600.0


def _down_for(marker: bytes) -> Any:
    def hook(envelope: Any) -> str | None:
        return "421 4.3.2 upstream going down" if marker in envelope.original_content else None

    return hook


async def test_audit_list_plain_and_json_with_since_and_user(cli: Cli) -> None:
    now = time.time()
    mid = await cli.store.put(new_message())
    code, _, err = await cli.run("quarantine", "show", mid)
    assert code == 0, err
    await cli.store.add_audit("alice", "release", mid, "ok", "mode=hidden")
    await cli.store.add_audit("sender:5be2c1", "request", mid, "ok")

    code, out, err = await cli.run("audit", "list", "--json", "--since", "7d", "--user", "alice")
    assert code == 0, err
    body = json.loads(out)
    assert body["total"] == 1
    [entry] = body["items"]
    assert (entry["actor"], entry["action"], entry["target"], entry["detail"]) == (
        "alice", "release", mid, "mode=hidden",
    )  # fmt: skip

    code, out, _ = await cli.run("audit", "list", "--target", mid)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["WHEN", "(UTC)", "USER"]
    assert [line.split()[2] for line in lines[1:4]] == ["sender:5be2c1", "alice", ACTOR]
    assert lines[-1] == "1-3 of 3 entries"
    day = time.strftime("%Y-%m-%d", time.gmtime(now))
    code, out, _ = await cli.run("audit", "list", "--json", "--until", "2020-01-01")
    assert json.loads(out)["total"] == 0
    code, out, _ = await cli.run("audit", "list", "--json", "--since", day, "--action", "view")
    assert [e["actor"] for e in json.loads(out)["items"]] == [ACTOR]
    code, _, err = await cli.run("audit", "list", "--since", "last tuesday")
    assert code == 2 and "since" in err and "not a time" in err


async def test_release_hidden_by_rule_and_age_reports_each_and_fails_for_the_down_ones(
    cli: Cli,
) -> None:
    old = time.time() - 2 * HOUR
    fine = [
        await cli.store.put(new_message(f"fine {i}", rule="R", received_at=old)) for i in range(3)
    ]
    down = await cli.store.put(new_message("DOWNSTREAM", rule="R", received_at=old))
    young = await cli.store.put(new_message("too young", rule="R"))
    other = await cli.store.put(new_message("other rule", rule="S", received_at=old))
    cli.upstream.data_hook = _down_for(b"DOWNSTREAM")

    code, out, err = await cli.run(
        "quarantine", "release", "--hidden", "--rule", "R", "--older-than", "1h"
    )
    assert code == 1, (out, err)  # one message did not go: the exit code says so
    lines = {line.split()[0]: line for line in out.splitlines() if line[:1].isalnum()}
    for i in fine:
        assert lines[i].split()[1] == "released"
    assert lines[down].split()[1] == "upstream_failed" and "still held" in lines[down]
    assert young not in out and other not in out
    assert "3 of 4 matching held message(s) released with recipients hidden" in out

    assert len(cli.upstream.messages) == 3
    for got in cli.upstream.messages:
        assert not any(a.encode() in got.data.split(b"\r\n\r\n")[0] for a in EXTERNAL_RCPTS)
    status = {i: (await cli.store.get(i)).status for i in [*fine, down, young, other]}  # type: ignore[union-attr]
    assert status == {**dict.fromkeys(fine, "released"), down: "held", young: "held", other: "held"}
    audit = {(e.actor, e.action, e.target, e.result) for e in await cli.store.list_audit()}
    assert {(ACTOR, "release", i, "ok") for i in fine} <= audit
    assert (ACTOR, "release", down, "upstream_failed") in audit

    # Once the upstream is back, the same command releases the one left, and only it.
    cli.upstream.data_hook = None
    code, out, err = await cli.run(
        "quarantine", "release", "--hidden", "--rule", "R", "--older-than", "1h", "--json"
    )
    assert code == 0, err
    body = json.loads(out)
    assert body["counts"] == {"released": 1} and body["results"][0]["id"] == down
    assert len(cli.upstream.messages) == 4


async def test_delete_by_sender_pattern(cli: Cli) -> None:
    doomed = await cli.store.put(new_message("doomed", rule="R"))
    kept = await cli.store.put(new_message("kept", rule="S"))
    code, out, err = await cli.run(
        "quarantine", "delete", "--sender", "*@example.org", "--rule", "R"
    )
    assert code == 0, err
    assert "1 of 1 matching held message(s) deleted" in out
    assert (await cli.store.get(doomed)).status == "deleted"  # type: ignore[union-attr]
    assert (await cli.store.get(kept)).status == "held"  # type: ignore[union-attr]


async def test_a_full_sender_address_deletes_that_sender_only(cli: Cli) -> None:
    # A full address is that sender, as `quarantine list` reads it: as a substring,
    # `--sender coordinator@example.org` also deleted xcoordinator@example.org's mail.
    doomed = await cli.store.put(new_message("doomed"))
    kept = await cli.store.put(
        dataclasses.replace(new_message("kept"), mail_from="xcoordinator@example.org")
    )
    code, out, err = await cli.run("quarantine", "delete", "--sender", "Coordinator@example.org")
    assert code == 0, err
    assert "1 of 1 matching held message(s) deleted" in out
    assert (await cli.store.get(doomed)).status == "deleted"  # type: ignore[union-attr]
    assert (await cli.store.get(kept)).status == "held"  # type: ignore[union-attr]


async def test_bulk_needs_filters_hidden_and_not_an_id_too(cli: Cli) -> None:
    mid = await cli.store.put(new_message())
    for args, says in [
        (("quarantine", "release", "--hidden"), "give a message id, or filters"),
        (("quarantine", "release", "--rule", "bulk-external"), "needs --hidden"),
        (("quarantine", "release", mid, "--rule", "bulk-external"), "not both"),
        (("quarantine", "delete"), "give a message id, or filters"),
    ]:
        code, _, err = await cli.run(*args)
        assert code == 2 and says in err, (args, err)
    assert (await cli.store.get(mid)).status == "held"  # type: ignore[union-attr]
    assert cli.upstream.messages == []


async def test_a_blank_filter_is_no_filter_and_never_decides_the_whole_quarantine(
    cli: Cli,
) -> None:
    # `ccguard quarantine delete --sender "$WHO"` with WHO unset: the blank sender matched
    # every held message, and the "at least one filter" guard let it through.
    kept = [await cli.store.put(new_message(f"keep {i}")) for i in range(2)]
    for args in (
        ("quarantine", "delete", "--sender", ""),
        ("quarantine", "delete", "--subject", "  "),
        ("quarantine", "release", "--hidden", "--rcpt-domain", ""),
    ):
        code, _, err = await cli.run(*args)
        assert code == 2 and "give a message id, or filters" in err, (args, err)
    for mid in kept:
        assert (await cli.store.get(mid)).status == "held"  # type: ignore[union-attr]
    assert cli.upstream.messages == []


async def test_audit_list_refuses_a_limit_or_offset_past_any_store_integer(cli: Cli) -> None:
    # They overflowed SQLite's integers: a Python traceback instead of a usage error.
    for flag in ("--limit", "--offset"):
        code, _, err = await cli.run("audit", "list", flag, "9" * 30)
        assert code == 2 and flag.lstrip("-") in err and "Traceback" not in err, (flag, err)
    code, _, err = await cli.run("audit", "list", "--offset", "-1")
    assert code == 2 and "Traceback" not in err
