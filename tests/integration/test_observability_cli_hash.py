"""``ccguard hash ADDRESS`` prints the token the logs use for that address."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay import cli
from relay.observability.redact import Redactor


def _run(argv: list[str]) -> int:
    return cli.main(argv)


def _config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "ccguard.toml"
    path.write_text(text)
    return str(path)


def test_is_a_registered_command() -> None:
    assert "relay.cli.hash" in cli.COMMANDS


def test_prints_the_same_hash_the_logs_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, '[logging]\nhash_key = "s3cret"\n')
    code = _run(
        [
            "hash",
            "--config",
            config,
            "Ann@" + "example".title() + "." + "org".upper(),
            "bob@example.com",
        ]
    )
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out == [
        Redactor("s3cret").address("ann@example.org"),
        Redactor("s3cret").address("bob@example.com"),
    ]


def test_key_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CCGUARD_LOGGING__HASH_KEY", "from-env")
    assert _run(["hash", "--config", _config(tmp_path, ""), "ann@example.org"]) == 0
    assert capsys.readouterr().out.strip() == Redactor("from-env").address("ann@example.org")


def test_without_a_key_exits_2_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CCGUARD_LOGGING__HASH_KEY", raising=False)
    assert _run(["hash", "--config", _config(tmp_path, ""), "ann@example.org"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "[logging] hash_key is not set" in captured.err


def test_rejects_something_that_is_not_an_address(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, '[logging]\nhash_key = "k"\n')
    assert _run(["hash", "--config", config, "ann.example.org"]) == 2
    assert "not an email address" in capsys.readouterr().err


def test_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, "[logging]\nhash_kee = 1\n")
    assert _run(["hash", "--config", config, "ann@example.org"]) == 2
    assert "logging.hash_kee: unknown key" in capsys.readouterr().err
