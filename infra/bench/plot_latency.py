#!/usr/bin/env python3
"""Latency histograms of `chorus-bench live-overhead` (its per-message CSVs).

    ~/.chorus/venv/bin/python -m pip install matplotlib   # once, if it is missing
    ~/.chorus/venv/bin/python infra/bench/plot_latency.py [--csv-dir target/live-overhead] \
        [--out docs/perf/live-overhead-histogram.png]

Reads every `<rate>.csv` in the directory and draws, per rate: the overhead (end to end
minus the direct provider call on the same tick) and the end-to-end latency beside the
direct call, on log-spaced bins, with the goal (overhead p50 5 ms, p99 20 ms) marked.
Prints each rate's p50/p90/p99 of the overhead as read back. Asserts nothing.
"""
import argparse
import csv
import math
import os
import sys

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    sys.exit("matplotlib is not installed: ~/.chorus/venv/bin/python -m pip install matplotlib")


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def column(rows, name):
    return [float(r[name]) for r in rows if r.get(name) not in (None, "")]


def percentile(values, p):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def log_bins(values, per_decade=40):
    low = max(0.1, min(values))
    high = max(values) * 1.05
    count = max(40, int(math.log10(high / low) * per_decade))
    return [low * (high / low) ** (i / count) for i in range(count + 1)]


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv-dir", default=os.path.join(root, "target", "live-overhead"))
    parser.add_argument("--out", default=os.path.join(root, "docs", "perf", "live-overhead-histogram.png"))
    args = parser.parse_args()

    runs = []
    for name in os.listdir(args.csv_dir):
        stem, ext = os.path.splitext(name)
        if ext == ".csv" and stem.isdigit():
            runs.append((int(stem), read(os.path.join(args.csv_dir, name))))
    if not runs:
        sys.exit(f"no <rate>.csv in {args.csv_dir}: run `chorus-bench live-overhead` first")
    runs.sort()

    fig, axes = plt.subplots(len(runs), 2, figsize=(12, 3.2 * len(runs)), squeeze=False)
    for row, (rate, rows) in zip(axes, runs):
        overhead = [v for v in column(rows, "overhead_ms") if v > 0]
        e2e = column(rows, "e2e_ms")
        direct = column(rows, "direct_ms")
        all_overhead = column(rows, "overhead_ms")
        print(
            f"{rate:>5} msg/s: {len(rows)} messages, overhead p50 {percentile(all_overhead, 50):.1f} ms, "
            f"p90 {percentile(all_overhead, 90):.1f} ms, p99 {percentile(all_overhead, 99):.1f} ms"
        )
        ax = row[0]
        if overhead:
            ax.hist(overhead, bins=log_bins(overhead), color="tab:red", alpha=0.8)
        ax.set_xscale("log")
        ax.axvline(5, color="black", linestyle="--", linewidth=1, label="goal p50 5 ms")
        ax.axvline(20, color="black", linestyle=":", linewidth=1, label="goal p99 20 ms")
        for p, style in ((50, "-"), (99, ":")):
            ax.axvline(percentile(all_overhead, p), color="tab:red", linestyle=style, linewidth=1.5,
                       label=f"p{p} {percentile(all_overhead, p):.1f} ms")
        ax.set_title(f"{rate} msg/s: overhead (end to end - direct)")
        ax.set_xlabel("ms (log)")
        ax.set_ylabel("messages")
        ax.legend(fontsize=8, loc="upper right")

        ax = row[1]
        both = e2e + direct
        if both:
            bins = log_bins(both)
            ax.hist(direct, bins=bins, color="tab:blue", alpha=0.6, label="direct provider call")
            ax.hist(e2e, bins=bins, color="tab:orange", alpha=0.6, label="end to end (POST -> reply)")
        ax.set_xscale("log")
        ax.set_title(f"{rate} msg/s: end to end vs direct")
        ax.set_xlabel("ms (log)")
        ax.legend(fontsize=8, loc="upper right")

    fig.suptitle("chorus-bench live-overhead: latency histograms")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
