"""The pinned tool versions agree with the ranges in pyproject.toml.

`make` and CI install from constraints/; a tool added to an extra without a
pin, or a pin outside the extra's range, would make CI install something other
than what contributors get. `make pins` rewrites the files.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS: dict[str, list[str]] = PYPROJECT["project"]["optional-dependencies"]


def pins(name: str) -> dict[str, Version]:
    """The `name==version` lines of a constraints file."""
    found: dict[str, Version] = {}
    for line in (ROOT / "constraints" / name).read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
        if match:
            found[canonicalize_name(match[1])] = Version(match[2])
    return found


def requirements(*extras: str) -> list[Requirement]:
    """The requirements of the extras, without the project's own."""
    reqs = [Requirement(r) for extra in extras for r in EXTRAS[extra]]
    return [r for r in reqs if canonicalize_name(r.name) != "safethreads"]


@pytest.mark.parametrize(
    ("constraints", "extras"),
    [("dev.txt", ("dev", "test", "plot")), ("free-threaded.txt", ("test",))],
)
def test_every_tool_is_pinned_within_its_range(
    constraints: str, extras: tuple[str, ...]
) -> None:
    """Each tool of the extras has one exact pin that its range admits."""
    pinned = pins(constraints)
    for req in requirements(*extras):
        version = pinned.get(canonicalize_name(req.name))
        assert version is not None, f"{req.name} has no pin in {constraints}"
        assert req.specifier.contains(version, prereleases=True), (
            f"{req.name}=={version} in {constraints} is outside {req}"
        )


def test_free_threaded_pins_keep_hypothesis_installable() -> None:
    """The free-threaded pin stays at a Hypothesis with no compiled part."""
    assert pins("free-threaded.txt")["hypothesis"] <= Version("6.155.7")
