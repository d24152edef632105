"""constraints.txt (`make lock`) pins every dependency pyproject.toml names, at a
version pyproject.toml allows: the image and `make venv` install exactly these."""

from __future__ import annotations

import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.helpers.process import ROOT


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_every_dependency_is_pinned_at_an_allowed_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    pins = _pins()
    for spec in map(Requirement, wanted):
        name = canonicalize_name(spec.name)
        assert name in pins, f"{spec.name} is not in constraints.txt: run `make lock`"
        assert spec.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {spec.name}=={pins[name]}, pyproject wants {spec}: "
            "run `make lock`"
        )
