"""Compare the same evaluation cells measured on two devices (e.g. the cpu studies' cells on 2 CPU cores and
on a GPU): how far apart is one cell's accuracy, beside how far apart two seeds of one row are?

    python benchmarks/compare_devices.py A/results.json B/results.json [--json OUT.json]

Cells pair up by (pre-training label and set fingerprint, network and its shape, target, mode, seed); a pair
whose fine-tuning length or pre-training steps differ is an error, not a difference. It prints every pair, then the
mean, mean absolute and largest difference in top-1 (B - A), and for scale the seed spread: the mean over rows
of the standard deviation across seeds, within each device (and B's over the rows A has several seeds of).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

CELL = ("label", "set_fingerprint", "arch", "arch_width", "arch_depth", "arch_feature", "target", "mode", "seed")
SAME = ("finetune_iterations", "pretrain_steps")


def read_cells(path: Path) -> dict[tuple, dict]:
    """The rows of one results.json, by cell; a cell measured twice in one file is an error."""
    try:
        rows = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise SystemExit(f"{path}: cannot read results ({error})") from None
    cells: dict[tuple, dict] = {}
    for row in rows:
        key = tuple(row.get(k) for k in CELL)
        if key in cells:
            raise SystemExit(f"{path}: cell {key} appears twice")
        cells[key] = row
    return cells


def by_row(cells: dict[tuple, dict]) -> dict[tuple, list[float]]:
    """Top-1 of every seed of each row (a cell without its seed)."""
    rows: dict[tuple, list[float]] = defaultdict(list)
    for key, row in cells.items():
        rows[key[:-1]].append(row["top1"])
    return rows


def seed_spread(cells: dict[tuple, dict], rows: set[tuple] | None = None) -> float:
    """Mean over rows (only those in `rows` when given) of the sample standard deviation of top-1 across seeds."""
    spreads = [statistics.stdev(v) for row, v in by_row(cells).items() if len(v) > 1 and (rows is None or row in rows)]
    return statistics.fmean(spreads) if spreads else float("nan")


def compare(a: dict[tuple, dict], b: dict[tuple, dict]) -> dict:
    """The paired differences (b - a) and the summary statistics."""
    pairs = []
    for key in sorted(a.keys() & b.keys(), key=str):  # cells of another set under the same label do not pair
        for field in SAME:
            if a[key].get(field) != b[key].get(field):
                raise SystemExit(f"cell {key}: {field} differs ({a[key].get(field)} vs {b[key].get(field)})")
        pairs.append({**dict(zip(CELL, key, strict=True)), "a": a[key]["top1"], "b": b[key]["top1"],
                      "a_device": a[key].get("device"), "b_device": b[key].get("device"),
                      "diff": b[key]["top1"] - a[key]["top1"]})
    if not pairs:
        raise SystemExit("the two files share no cell")
    diffs = [p["diff"] for p in pairs]
    return {"pairs": pairs, "n": len(pairs), "mean_diff": statistics.fmean(diffs),
            "mean_abs_diff": statistics.fmean(abs(d) for d in diffs), "max_abs_diff": max(abs(d) for d in diffs),
            "b_higher": sum(d > 0 for d in diffs),
            "seed_spread_a": seed_spread(a), "seed_spread_b": seed_spread(b),
            "seed_spread_b_on_a_rows": seed_spread(b, {row for row, v in by_row(a).items() if len(v) > 1})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--json", type=Path, help="also write the pairs and statistics here")
    args = parser.parse_args()
    result = compare(read_cells(args.a), read_cells(args.b))
    print("| pre-training | arch | target | mode | seed | A | B | B - A |\n"
          "| --- | --- | --- | --- | ---: | ---: | ---: | ---: |")
    for p in result["pairs"]:
        print(f"| {p['label']} | {p['arch']} | {p['target']} | {p['mode']} | {p['seed']} | {p['a']:.2f} | "
              f"{p['b']:.2f} | {p['diff']:+.2f} |")
    print(f"\n{result['n']} cells on both (A: {result['pairs'][0]['a_device']}, B: {result['pairs'][0]['b_device']}): "
          f"B - A mean {result['mean_diff']:+.2f}, mean |B - A| {result['mean_abs_diff']:.2f}, "
          f"largest {result['max_abs_diff']:.2f} points; B higher in {result['b_higher']} of {result['n']}. "
          f"Seed spread (mean std across seeds per row): A {result['seed_spread_a']:.2f}, "
          f"B {result['seed_spread_b']:.2f} points ({result['seed_spread_b_on_a_rows']:.2f} on A's rows).")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
