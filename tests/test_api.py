"""The public surface: what `safethreads` exports and how it presents it."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import inspect
import re
from pathlib import Path

import pytest

import safethreads


def _docstring_examples() -> list[tuple[str, str]]:
    """Every ```python block in the docstrings of the public objects and members.

    Doctest and the Markdown plugin skip the docstrings of re-exported classes
    (their `__module__` names the package, not the defining module), so the
    examples are collected here from the public surface itself.
    """
    found: list[tuple[str, str]] = []
    for name in safethreads.__all__:
        obj = getattr(safethreads, name)
        members = [(name, obj)]
        if inspect.isclass(obj):
            members += [(f"{name}.{attr}", v) for attr, v in vars(obj).items()]
        for where, member in members:
            target = getattr(member, "__func__", getattr(member, "fget", member))
            doc = inspect.getdoc(target) if callable(target) else None
            for i, code in enumerate(
                re.findall(r"```python\n(.*?)```", doc or "", re.DOTALL)
            ):
                found.append((f"{where}#{i}", code))
    return found


DOCSTRING_EXAMPLES = _docstring_examples()


class TestPublicApi:
    def test_all_is_sorted_tuple(self) -> None:
        """`__all__` is a sorted tuple without duplicates."""
        assert isinstance(safethreads.__all__, tuple)
        assert list(safethreads.__all__) == sorted(set(safethreads.__all__))

    def test_all_matches_public_objects(self) -> None:
        """Every public class, function or constant of the package is in `__all__`."""
        public = {
            name
            for name, obj in vars(safethreads).items()
            if not name.startswith("_")
            and (inspect.isclass(obj) or inspect.isfunction(obj) or name.isupper())
        }
        assert public == set(safethreads.__all__)

    def test_objects_report_public_module(self) -> None:
        """Re-exported objects name `safethreads` as their module."""
        for name in safethreads.__all__:
            assert getattr(safethreads, name).__module__ == "safethreads", name

    def test_every_public_name_is_documented(self) -> None:
        """Every public object carries a docstring."""
        for name in safethreads.__all__:
            assert inspect.getdoc(getattr(safethreads, name)), name

    def test_api_reference_lists_every_public_name(self) -> None:
        """docs/reference.md renders every name of `__all__`."""
        reference = Path(__file__).parent.parent / "docs" / "reference.md"
        rendered = set(
            re.findall(r"^::: safethreads\.(\w+)$", reference.read_text(), re.MULTILINE)
        )
        assert rendered == set(safethreads.__all__)

    def test_ships_py_typed(self) -> None:
        """The package declares itself typed (PEP 561)."""
        assert importlib.resources.files("safethreads").joinpath("py.typed").is_file()

    def test_version(self) -> None:
        """`__version__` comes from the installed metadata."""
        assert safethreads.__version__ == importlib.metadata.version("safethreads")


class TestDocstringExamples:
    def test_examples_are_found(self) -> None:
        """The collector sees the examples of every primitive's docstring."""
        owners = {where.split(".")[0].split("#")[0] for where, _ in DOCSTRING_EXAMPLES}
        assert {"ResultThread", "LockedDict", "ThreadGroup", "spawn"} <= owners

    @pytest.mark.parametrize(
        "code",
        [c for _, c in DOCSTRING_EXAMPLES],
        ids=[w for w, _ in DOCSTRING_EXAMPLES],
    )
    def test_example_runs(self, code: str) -> None:
        """Each docstring example runs without error."""
        exec(compile(code, "<docstring example>", "exec"), {})  # noqa: S102
