#!/usr/bin/python3
"""Draws the plots of docs/BENCHMARKS.md from `hashwall bench robustness --out DIR`.

    tools/deps.sh python3-matplotlib     # once (Debian's package)
    /usr/bin/python3 tools/plot_bench.py DIR/robustness.json --out docs/img

Writes bench-recall-by-family.png (recall at the default thresholds, one bar per signal),
bench-recall-by-edit.png (the same per edit) and bench-pr-curves.png (precision-recall
over all edited queries, one curve per signal). Only reads the JSON: any signal the bench
reports gets its bars and curve without changes here.
"""
import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def grouped_bars(ax, rows, signals, horizontal):
    n = len(signals)
    width = 0.8 / n
    for k, sig in enumerate(signals):
        vals = [100 * r["signals"][sig]["recall"] for r in rows]
        pos = [i + (k - (n - 1) / 2) * width for i in range(len(rows))]
        if horizontal:
            ax.barh(pos, vals, height=width, label=sig)
        else:
            ax.bar(pos, vals, width=width, label=sig)
    labels = [r["name"] for r in rows]
    if horizontal:
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels(labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_xlabel("recall at the default thresholds (%)")
        ax.grid(axis="x", alpha=0.3)
    else:
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(labels, rotation=35, ha="right")
        ax.set_ylim(0, 100)
        ax.set_ylabel("recall at the default thresholds (%)")
        ax.grid(axis="y", alpha=0.3)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("robustness_json")
    ap.add_argument("--out", default="docs/img")
    a = ap.parse_args()
    with open(a.robustness_json) as f:
        rep = json.load(f)
    os.makedirs(a.out, exist_ok=True)
    signals = [s["name"] for s in rep["signals"]]
    sub = f'{rep["known"]} known photos, {rep["distractors"]} distractors, {rep["queries"]} edited queries'

    fig, ax = plt.subplots(figsize=(12, 5))
    grouped_bars(ax, rep["families"], signals, horizontal=False)
    ax.set_title("Recall per edit family\n" + sub, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(a.out, "bench-recall-by-family.png"), dpi=110)

    edits = rep["edits"]
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(edits) * max(1, len(signals) / 3) + 1.5))
    grouped_bars(ax, edits, signals, horizontal=True)
    ax.set_title("Recall per edit\n" + sub, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(os.path.join(a.out, "bench-recall-by-edit.png"), dpi=100)

    fig, ax = plt.subplots(figsize=(7, 5))
    for s in rep["signals"]:
        pts = s["pr_curve"]["points"]  # [score, precision, recall]
        ax.plot([p[2] for p in pts], [p[1] for p in pts], label=s["name"])
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    ax.set_title("Precision-recall over all edited queries\n" + sub, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(a.out, "bench-pr-curves.png"), dpi=110)


if __name__ == "__main__":
    main()
