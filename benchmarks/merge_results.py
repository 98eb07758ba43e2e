"""Merge the rows of several `ssdd evaluate` runs into one table (same protocol, different sets).

    python benchmarks/merge_results.py OUT_DIR RESULTS.json [RESULTS.json ...]

Writes OUT_DIR/results.json and rebuilds summary.md/json and results.png from it (as
`ssdd evaluate --report-only`). Rows with the same (label, arch, target, seed, mode) must not repeat.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ssdd.evaluation.report import report_from_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("results", type=Path, nargs="+")
    args = parser.parse_args()
    rows, seen = [], set()
    for path in args.results:
        for row in json.loads(path.read_text()):
            key = (row["label"], row["arch"], row["target"], row["seed"], row["mode"])
            if key in seen:
                raise SystemExit(f"{path}: row {key} is already in an earlier file")
            seen.add(key)
            rows.append(row)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(report_from_results(args.out_dir))


if __name__ == "__main__":
    main()
