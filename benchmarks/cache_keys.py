"""Are the committed stages still found cached? Recompute every committed stage's cache key.

For each `stage.json` under benchmarks/results (a finished stage of `ssdd reproduce`), read the stage's
resolved `config.yaml` with today's schema (old key names are translated as any config file's are), compute
its key exactly as `ssdd reproduce` does (the upstream keys come from the stage.json) and compare it with the
key the stage was saved under. A stage whose key changed would be run again by `ssdd reproduce`.

The data files a stage read are part of its key: run `make data` first (from the repository root).

config.yaml is the config as the stage ran it, after the run's own normalisation (a YAML `off` read as
`false` is saved as "off"), while the key hashed the config as the study resolved it; a stage whose
config.yaml was normalised shows as changed here although `ssdd reproduce --dry-run` with the study's own
study.yaml finds it cached (at 1a36323: boost-no-approx of study_cpu, and the study_cpu evaluation, whose
evaluate schema has changed since it ran). Compare this script's output before and after a change.

    python benchmarks/cache_keys.py            # one line per stage; exit 1 when any key changed
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ssdd.config import load_config
from ssdd.presets import command_schema
from ssdd.study.runner import stage_key


def check(root: Path) -> list[tuple[Path, bool, str]]:
    rows = []
    for marker in sorted(root.rglob("stage.json")):
        stage = json.loads(marker.read_text())
        cfg = load_config(command_schema(stage["kind"]), marker.parent / "config.yaml")
        key = stage_key(stage["kind"], cfg, stage["upstream"])
        rows.append((marker.parent, key == stage["key"], key))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", nargs="?", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    missing = [p for p in ("data/cifar100.npz", "data/cifar10.npz", "data/flowers102_32.npz") if not Path(p).is_file()]
    if missing:
        print(f"missing {', '.join(missing)}: run `make data` first", file=sys.stderr)
        return 2
    rows = check(args.root)
    for folder, same, key in rows:
        print(f"{'cached ' if same else 'CHANGED'} {folder} ({key[:8]})")
    changed = sum(not same for _, same, _ in rows)
    print(f"{len(rows) - changed} of {len(rows)} committed stages keep their cache key")
    return 1 if changed else 0


if __name__ == "__main__":
    raise SystemExit(main())
