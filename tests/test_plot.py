"""The benchmark figure's input: results read back from the published tables."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks.plot import groups, main, parse_markdown

ROOT = Path(__file__).resolve().parent.parent

TABLES = """\
## safethreads benchmarks on CPython 3.11.7

GIL enabled; medians of 9 rounds

### `d[k]` on 1,000 keys

| case | median / op | min | max | vs Lock in `with` |
| --- | --- | --- | --- | --- |
| Lock in `with` | 252 ns | 246 ns | 261 ns | 1.00× |
| LockedDict | 150 ns | 148 ns | 151 ns | 0.60× |

### `k in d` on 1,000 keys

| case | median / op | min | max | vs Lock in `with` |
| --- | --- | --- | --- | --- |
| Lock in `with` | 296 ns | 295 ns | 298 ns | 1.00× |
| LockedDict | 190 ns | 189 ns | 190 ns | 0.64× |

### Peak RSS growth (fresh interpreter per case)

| case | items | peak RSS growth | wall time |
| --- | --- | --- | --- |
| WorkerPool.map(..., buffersize=8) | 1,000,000 | 0.0 MB | 9.84 s |

### Start 1,000 threads

| case | median / thread | min | max | vs spawn() by hand |
| --- | --- | --- | --- | --- |
| spawn() by hand | 96.76 µs | 92.31 µs | 99.69 µs | 1.00× |
| ThreadGroup | 97.70 µs | 95.75 µs | 103.39 µs | 1.01× |
"""


class TestPlotInput:
    def test_reads_the_ratio_tables_and_skips_the_others(self) -> None:
        """Tables ending in a `vs` column become comparisons; others are left out."""
        data = parse_markdown(TABLES)
        assert [c["title"] for c in data["comparisons"]] == [
            "`d[k]` on 1,000 keys",
            "`k in d` on 1,000 keys",
            "Start 1,000 threads",
        ]
        first = data["comparisons"][0]
        assert first["unit"] == "op"
        assert first["cases"] == [
            {"label": "Lock in `with`", "ratio": 1.0},
            {"label": "LockedDict", "ratio": 0.6},
        ]
        assert data["meta"]["python"] == "3.11.7"

    def test_comparisons_of_the_same_cases_share_a_panel(self) -> None:
        """Consecutive comparisons of identical cases are drawn together."""
        panels = groups(parse_markdown(TABLES)["comparisons"])
        assert [len(p) for p in panels] == [2, 1]

    def test_the_published_tables_give_the_figure(self) -> None:
        """docs/benchmarks.md holds the tables the committed figure is drawn from."""
        data = parse_markdown((ROOT / "docs" / "benchmarks.md").read_text())
        assert len(data["comparisons"]) >= 8
        for comp in data["comparisons"]:
            assert comp["cases"][0]["ratio"] == 1.0, comp["title"]

    def test_draws_a_png(self, tmp_path: Path) -> None:
        """With Matplotlib installed, the tables are drawn into one PNG."""
        pytest.importorskip("matplotlib")
        source = tmp_path / "results.md"
        source.write_text(TABLES)
        assert main([str(source), str(tmp_path / "out.png")]) == 0
        assert (tmp_path / "out.png").read_bytes().startswith(b"\x89PNG")
