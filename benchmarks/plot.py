"""Plot benchmark results: `python -m benchmarks.plot RESULTS.json OUT.png`.

One panel per comparison, one bar per case, showing each case's median time
relative to the comparison's baseline measured in the same run.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")  # no display needed
import matplotlib.pyplot as plt


def main(argv: list[str]) -> int:
    """Read the JSON written by `python -m benchmarks --json` and plot it."""
    if len(argv) != 2:
        print(__doc__)
        return 2
    source, target = Path(argv[0]), Path(argv[1])
    data = json.loads(source.read_text())
    comparisons = data["comparisons"]
    cols = 2
    rows = math.ceil(len(comparisons) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(12, 2.6 * rows + 0.8), squeeze=False)
    for ax, comp in zip(axes.flat, comparisons, strict=False):
        labels = [c["label"] for c in comp["cases"]][::-1]
        ratios = [c["ratio"] for c in comp["cases"]][::-1]
        # The baseline (first case, drawn last) in grey, the contenders in colour.
        colors = ["#3f51b5"] * (len(labels) - 1) + ["#9e9e9e"]
        bars = ax.barh(labels, ratios, color=colors)
        ax.bar_label(bars, [f"{r:.2f}×" for r in ratios], padding=3, fontsize=8)
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_title(comp["title"], fontsize=9)
        ax.tick_params(labelsize=8)
        ax.set_xlim(0, max(ratios) * 1.25)
    for ax in list(axes.flat)[len(comparisons) :]:
        ax.set_visible(False)
    meta = data["meta"]
    fig.suptitle(
        f"Median time relative to the first case of each comparison (lower is "
        f"faster) — CPython {meta['python']}, {meta['cpus']} CPUs",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.98))  # room for the title
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=110)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
