"""The public surface: what `safethreads` exports and how it presents it."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import inspect

import safethreads


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

    def test_ships_py_typed(self) -> None:
        """The package declares itself typed (PEP 561)."""
        assert importlib.resources.files("safethreads").joinpath("py.typed").is_file()

    def test_version(self) -> None:
        """`__version__` comes from the installed metadata."""
        assert safethreads.__version__ == importlib.metadata.version("safethreads")
