"""Plot benchmark results: `python -m benchmarks.plot RESULTS OUT.png`.

RESULTS is the JSON written by `python -m benchmarks --json PATH`, or the
Markdown tables that the same command prints (as kept in
`docs/benchmarks.md`), so that the figure can be redrawn from the published
tables without running the benchmarks again.

The panels are stacked in a single column so that the figure reads at the
width of a documentation page.  A comparison gets a panel with a bar per case,
its median time relative to the comparison's baseline (the first case, in
grey) measured in the same run.  Consecutive comparisons of the same cases
(the four single-key `LockedDict` operations, the three `WorkerPool` runs)
share a panel: a row per comparison, a bar per contender, the baseline being
the line at 1.
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

# Sizes in points for a figure shown about 8 inches wide: at the width of a
# documentation page, text comes out at the size of the page's own small print.
FIG_WIDTH = 8.0
TITLE_SIZE = 13
LABEL_SIZE = 12
LABEL_WIDTH = 30  # characters per line of a case label
TITLE_WIDTH = 52  # characters per line of a panel title
BAR_HEIGHT = 0.45  # inches per bar
PANEL_EXTRA = 0.9  # inches per panel for its title and spacing
DPI = 150
PALETTE = ("#3f51b5", "#ef6c00", "#2e7d32", "#6a1b9a")

# A table row as `python -m benchmarks` prints it; the last column is the ratio.
_RATIO = re.compile(r"^([0-9.]+)×$")


def load(source: Path) -> dict[str, Any]:
    """Read results from the JSON or the Markdown output of the benchmarks."""
    text = source.read_text()
    if source.suffix == ".json":
        data: dict[str, Any] = json.loads(text)
        return data
    return parse_markdown(text)


def parse_markdown(text: str) -> dict[str, Any]:
    """The comparisons in Markdown tables whose last column is `vs <baseline>`.

    Tables of another shape (memory, contention) are left out, as they are
    from the JSON.
    """
    comparisons: list[dict[str, Any]] = []
    title = ""
    rows: list[list[str]] = []

    def flush() -> None:
        if len(rows) > 2 and rows[0][-1].startswith("vs "):
            cases = []
            for row in rows[2:]:
                found = _RATIO.match(row[-1])
                if found is None:
                    return
                cases.append({"label": row[0], "ratio": float(found.group(1))})
            unit = rows[0][1].removeprefix("median / ")
            comparisons.append({"title": title, "unit": unit, "cases": cases})

    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
            continue
        if rows:
            flush()
            rows = []
        if line.startswith("### "):
            title = line.removeprefix("### ").strip()
    python = re.search(r"CPython (\d+\.\d+\.\d+)", text)
    cpus = re.search(r"(\d+) CPUs", text)
    meta = {
        "python": python.group(1) if python else "?",
        "cpus": cpus.group(1) if cpus else "?",
    }
    return {"meta": meta, "comparisons": comparisons}


def _plain(text: str) -> str:
    """Drop Markdown code marks, which Matplotlib would print as they are."""
    return text.replace("`", "")


def _short(title: str) -> str:
    """A comparison's title without its closing parenthesis of details.

    The details (worker count, how the rounds were taken) are in the tables
    beside the figure; at page width they only make the labels unreadable.
    """
    return re.sub(r" \([^()]*\)$", "", _plain(title))


def groups(comparisons: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Consecutive comparisons of the same cases, which share one panel."""
    found: list[list[dict[str, Any]]] = []
    for comp in comparisons:
        labels = [c["label"] for c in comp["cases"]]
        if found and [c["label"] for c in found[-1][0]["cases"]] == labels:
            found[-1].append(comp)
        else:
            found.append([comp])
    return found


def _rows(group: list[dict[str, Any]]) -> int:
    """The bars of a panel."""
    if len(group) == 1:
        return len(group[0]["cases"])
    return len(group) * (len(group[0]["cases"]) - 1)


def _single(ax: Any, comp: dict[str, Any]) -> None:
    """One comparison: a bar per case, the baseline in grey."""
    labels = [textwrap.fill(_plain(c["label"]), LABEL_WIDTH) for c in comp["cases"]]
    ratios = [c["ratio"] for c in comp["cases"]]
    colors = ["#9e9e9e"] + ["#3f51b5"] * (len(labels) - 1)
    bars = ax.barh(range(len(labels)), ratios, color=colors, height=0.7)
    ax.set_yticks(range(len(labels)), labels)
    ax.bar_label(bars, [f"{r:.2f}×" for r in ratios], padding=4, fontsize=LABEL_SIZE)
    ax.set_xlim(0, max(ratios) * 1.22)
    _title(ax, _short(comp["title"]))


def _grouped(ax: Any, group: list[dict[str, Any]]) -> None:
    """Comparisons of the same cases: a row each, a bar per contender."""
    cases = [c["label"] for c in group[0]["cases"]]
    contenders = cases[1:]
    height = 0.8 / len(contenders)
    top = 0.0
    for j, label in enumerate(contenders):
        ratios = [comp["cases"][j + 1]["ratio"] for comp in group]
        ys = [i + (j - (len(contenders) - 1) / 2) * height for i in range(len(group))]
        bars = ax.barh(
            ys, ratios, height=height * 0.92, color=PALETTE[j], label=_plain(label)
        )
        ax.bar_label(
            bars, [f"{r:.2f}×" for r in ratios], padding=4, fontsize=LABEL_SIZE
        )
        top = max(top, *ratios)
    titles = [textwrap.fill(_short(comp["title"]), LABEL_WIDTH) for comp in group]
    ax.set_yticks(range(len(group)), titles)
    ax.set_xlim(0, max(top, 1.0) * 1.22)
    # Above the bars, under the title: the bars are as long as the data says.
    ax.legend(
        fontsize=LABEL_SIZE - 1,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncol=min(len(contenders), 2),
        frameon=False,
        handlelength=1.2,
        columnspacing=1.2,
    )
    rows = -(-len(contenders) // 2)
    _title(ax, f"Relative to {_plain(cases[0])}, the line at 1.00×", pad=6 + 20 * rows)


def _title(ax: Any, title: str, pad: float = 6) -> None:
    ax.set_title(textwrap.fill(title, TITLE_WIDTH), fontsize=TITLE_SIZE, pad=pad)


def plot(data: dict[str, Any], target: Path) -> None:
    """Draw every comparison of `data` into the PNG file `target`."""
    # Here, so that reading results needs no Matplotlib (nor do the tests).
    import matplotlib as mpl  # noqa: PLC0415

    mpl.use("Agg")  # no display needed
    import matplotlib.pyplot as plt  # noqa: PLC0415

    panels = groups(data["comparisons"])
    heights = [BAR_HEIGHT * _rows(g) + PANEL_EXTRA for g in panels]
    top = 1.0  # inches above the panels for the figure's title
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(FIG_WIDTH, sum(heights) + top),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for ax, group in zip(axes.flat, panels, strict=True):
        if len(group) == 1:
            _single(ax, group[0])
        else:
            _grouped(ax, group)
        ax.invert_yaxis()  # first case on top, as in the tables
        ax.axvline(1.0, color="black", linewidth=1)
        ax.tick_params(axis="y", labelsize=LABEL_SIZE, length=0)
        ax.set_xticks([])  # the bars carry their values: no x axis to read
        for side in ("top", "right", "bottom"):
            ax.spines[side].set_visible(False)
    meta = data["meta"]
    fig.suptitle(
        "Median time relative to the baseline of each comparison\n"
        f"(lower is faster; CPython {meta['python']}, {meta['cpus']} CPUs)",
        fontsize=TITLE_SIZE + 1,
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - top / (sum(heights) + top)), h_pad=1.5)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=DPI)
    print(f"wrote {target}")


def main(argv: list[str]) -> int:
    """Read the results written by `python -m benchmarks` and plot them."""
    if len(argv) != 2:
        print(__doc__)
        return 2
    plot(load(Path(argv[0])), Path(argv[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
