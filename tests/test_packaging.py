"""The package as users get it: built, checked, installed from the wheel."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*cmd: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.packaging
@pytest.mark.timeout(300)
def test_wheel_installs_and_runs_the_tour(tmp_path: Path) -> None:
    """The built wheel passes twine's checks, installs alone and runs the tour."""
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, ROOT)
    wheel = next(dist.glob("*.whl"))
    sdist = next(dist.glob("*.tar.gz"))
    run(sys.executable, "-m", "twine", "check", "--strict", wheel, sdist)

    wheel_names = zipfile.ZipFile(wheel).namelist()
    assert "safethreads/py.typed" in wheel_names
    assert not [n for n in wheel_names if n.startswith("tests/")]
    with tarfile.open(sdist) as archive:
        sdist_names = archive.getnames()
    top = sdist_names[0].split("/")[0]
    for needed in ("tests/conftest.py", "docs/index.md", "LICENSE", "CHANGELOG.md"):
        assert f"{top}/{needed}" in sdist_names, needed

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", wheel)
    # Run from an empty folder so that nothing can come from the source tree.
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    location = run(python, "-c", "import safethreads; print(safethreads.__file__)")
    assert str(venv) in location
    tour = run(python, "-m", "safethreads", cwd=workdir)
    assert "ResultThread" in tour
    assert run(python, "-m", "safethreads", "--help", cwd=workdir).startswith("usage:")


# The install commands that README.md and docs/getting-started.md give for
# today, before the first release, in the order a user runs them.
INSTALL_COMMANDS = [
    "python -m pip install ./safethreads",
    "python -m pip wheel --no-deps --wheel-dir dist ./safethreads",
    "python -m pip install --no-index --find-links dist safethreads",
]


def documented_install_commands(page: Path) -> list[str]:
    """The `python -m pip` lines of the console blocks of a page's Install section."""
    section = page.read_text().split("## Install\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```console\n(.*?)```", section, re.DOTALL)
    return [
        line.strip()
        for block in blocks
        for line in block.splitlines()
        if line.startswith("python -m pip ")
    ]


@pytest.mark.parametrize("page", ["README.md", "docs/getting-started.md"])
def test_pages_give_the_tested_install_commands(page: str) -> None:
    """The README and getting-started give the commands the next test runs."""
    assert documented_install_commands(ROOT / page) == INSTALL_COMMANDS
    assert "pip install safethreads" in (ROOT / page).read_text()  # after release


@pytest.mark.packaging
@pytest.mark.timeout(600)
def test_documented_install_commands_work(tmp_path: Path) -> None:
    """Each documented command, run as written in a fresh venv, installs the package."""
    # A checkout of the repository, as `./safethreads` next to the user.
    shutil.copytree(
        ROOT,
        tmp_path / "safethreads",
        ignore=shutil.ignore_patterns(
            ".git", ".venv*", "site", "dist", "build", "__pycache__", ".*cache*"
        ),
    )
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    check = "import safethreads; print(safethreads.__file__, safethreads.__version__)"
    for i, command in enumerate(INSTALL_COMMANDS):
        venv = tmp_path / f"venv{i}"
        run(sys.executable, "-m", "venv", venv)
        python = venv / "bin" / "python"
        argv = shlex.split(command)
        assert argv[0] == "python"
        run(python, *argv[1:], cwd=tmp_path)
        if "install" not in argv:
            continue  # building the wheel installs nothing
        location, version = run(python, "-c", check, cwd=elsewhere).split()
        assert location.startswith(str(venv)), location
        assert version == project["version"]
