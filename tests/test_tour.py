"""The command line: `python -m safethreads` tour and quick benchmark."""

from __future__ import annotations

import subprocess
import sys

import pytest

from safethreads._tour import main


class TestTour:
    def test_whole_tour_runs(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The default command runs every section of the tour and succeeds."""
        assert main([]) == 0
        out = capsys.readouterr().out
        assert "ResultThread" in out
        assert "caught in the caller: ValueError" in out

    def test_one_section(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A named section runs alone."""
        assert main(["tour", "thread"]) == 0
        assert "Countdown(5).result() -> [5, 4, 3, 2, 1]" in capsys.readouterr().out

    def test_group_section_shows_bounded_collecting_group(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The group section runs a bounded batch and collects its outcomes."""
        assert main(["tour", "group"]) == 0
        out = capsys.readouterr().out
        assert "raised at the end: ValueError('job 25 failed')" in out
        peak = int(out.split("most jobs running at once: ")[1].split()[0])
        assert 1 <= peak <= 4
        assert "results(return_exceptions=True): " in out

    def test_unknown_section_is_an_error(self) -> None:
        """An unknown section name is rejected with usage exit status 2."""
        with pytest.raises(SystemExit) as info:
            main(["tour", "nonsense"])
        assert info.value.code == 2

    def test_bench_prints_ratio_table(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`bench` prints Markdown tables with same-run ratios, progress on stderr."""
        assert main(["bench", "--rounds", "1"]) == 0
        captured = capsys.readouterr()
        assert "| ResultThread |" in captured.out
        assert "× |" in captured.out
        assert "." in captured.err

    @pytest.mark.subprocess
    def test_help_from_the_command_line(self) -> None:
        """`python -m safethreads --help` documents both commands."""
        done = subprocess.run(
            [sys.executable, "-m", "safethreads", "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert "tour" in done.stdout
        assert "bench" in done.stdout
