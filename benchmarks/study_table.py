"""Markdown tables for docs/results.md from one evaluation folder (results.json, config.yaml) and its sets' manifests.

Three layouts:
- `rows` (default): one line per pre-training, top-1 (mean ± std over seeds) for every target x mode of one
  architecture, beside the compute each row used: distillation outer steps (- for the random subsets, which
  have none) and time, pre-training SGD steps and time, and the storage.
- `budget`: one line per method, one column per budget, for one target x mode (`--panel`).
- `arch`: one line per pre-training, one column per architecture, for one target x mode (`--panel`);
  with `--compute`, the same grid holds each cell's mean pre-training and fine-tuning (or probe) wall-clock time.

    python benchmarks/study_table.py runs/cpu_equal/evaluate/evaluate-XXXXXXXX
    python benchmarks/study_table.py EVAL_DIR --layout budget --panel cifar10:linear_probe
    python benchmarks/study_table.py EVAL_DIR --layout arch --panel cifar10:finetune [--compute]

Reads only JSON and YAML: nothing is trained. Sets named in config.yaml that cannot be read lose their
distillation columns (shown as -), not their accuracy.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from ssdd.evaluation.protocol import source_label
from ssdd.evaluation.report import summarize
from ssdd.report import formats as F
from ssdd.report.gather import REFERENCE_NAMES, resolve_folder

REFERENCES = REFERENCE_NAMES  # label -> what the report calls the row, in the report's order
MODES = {"finetune": "fine-tune", "linear_probe": "probe"}
DASH = F.DASH


def top1(s: dict[str, Any] | None) -> str:
    """mean ± std over seeds; one seed says so: 53.93 (n = 1)."""
    if s is None:
        return DASH
    return F.mean_std(s["top1_mean"], s["top1_std"], s["seeds"], with_n=s["seeds"] <= 1)


def count(value: Any) -> str:
    return DASH if value is None else f"{int(value):,}"


def set_manifests(eval_dir: Path) -> dict[str, dict[str, Any]]:
    """label -> manifest of every distilled set config.yaml names (found as `ssdd report` finds them)."""
    config = yaml.safe_load((eval_dir / "config.yaml").read_text()) or {}
    found = {}
    for named in config.get("distilled", []):
        folder = resolve_folder(named, eval_dir)
        try:
            manifest = json.loads((folder / "manifest.json").read_text()) if folder else None
            found[source_label(manifest)] = manifest
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return found


def row_order(summary: list[dict[str, Any]], manifests: dict[str, dict[str, Any]]) -> list[str]:
    labels = list(dict.fromkeys(s["label"] for s in summary))
    sets = [label for label in manifests if label in labels] + \
        [label for label in labels if label not in manifests and label not in REFERENCES]
    return [*sets, *(label for label in REFERENCES if label in labels)]


def rows_table(summary: list[dict[str, Any]], manifests: dict[str, dict[str, Any]], arch: str) -> str:
    mine = [s for s in summary if s["arch"] == arch]
    panels = list(dict.fromkeys((s["target"], s["mode"]) for s in mine))
    cell = {(s["label"], s["target"], s["mode"]): s for s in mine}
    head = ["pre-training", "distill steps", "distill time", "pre-train steps", "pre-train time", "storage (img-eq)",
            *(f"{t} {MODES.get(m, m)}" for t, m in panels)]
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    for label in row_order(mine, manifests):
        first = next(s for s in mine if s["label"] == label)
        steps = first.get("distill_steps")
        if steps is None:  # rows from before the evaluation recorded it
            steps = manifests.get(label, {}).get("steps_done")
        reference = label in REFERENCES
        lines.append("| " + " | ".join([
            REFERENCES.get(label, label),
            DASH if reference else count(steps),
            DASH if reference else F.seconds(first.get("distill_s")),
            DASH if label == "no_pretrain" else count(first.get("pretrain_steps")),
            DASH if label == "no_pretrain" else F.seconds(first.get("pretrain_s")),
            F.image_equivalents(first.get("image_equivalents")),
            *(top1(cell.get((label, t, m))) for t, m in panels)]) + " |")
    return "\n".join(lines)


def budget_table(summary: list[dict[str, Any]], target: str, mode: str, arch: str) -> str:
    mine = [s for s in summary if (s["arch"], s["target"], s["mode"]) == (arch, target, mode)]
    budgets = sorted({s["budget"] for s in mine if s.get("budget") is not None})
    methods = list(dict.fromkeys(s["label"].split("@")[0] for s in mine if s.get("budget") is not None))
    by = {(s["label"].split("@")[0], s["budget"]): s for s in mine if s.get("budget") is not None}
    head = ["method", *(f"N = {b:g}" for b in budgets)]
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * len(budgets)]
    lines += ["| " + " | ".join([m, *(top1(by.get((m, b))) for b in budgets)]) + " |" for m in methods]
    for label, name in REFERENCES.items():
        ref = next((s for s in mine if s["label"] == label), None)
        if ref is not None:
            lines.append(f"| {name} | " + " | ".join([top1(ref)] * len(budgets)) + " |")
    return "\n".join(lines)


def compute(s: dict[str, Any] | None) -> str:
    """mean pre-training / evaluation (fine-tuning or probe) wall-clock of a cell: 151 s / 92 s."""
    if s is None:
        return DASH
    pretrain = DASH if s["label"] == "no_pretrain" else F.seconds(s.get("pretrain_s"))
    return f"{pretrain} / {F.seconds(s.get('eval_s'))}"


def config_archs(eval_dir: Path) -> list[str]:
    """The architectures in the order config.yaml's `models` names them."""
    config = yaml.safe_load((eval_dir / "config.yaml").read_text()) or {}
    return list(dict.fromkeys(m["name"] for m in config.get("models", []) if isinstance(m, dict) and "name" in m))


def arch_table(summary: list[dict[str, Any]], manifests: dict[str, dict[str, Any]], target: str, mode: str,
               times: bool = False, order: list[str] | None = None) -> str:
    mine = [s for s in summary if (s["target"], s["mode"]) == (target, mode)]
    found = set(s["arch"] for s in mine)
    archs = [a for a in order or [] if a in found] + sorted(found - set(order or []))
    by = {(s["label"], s["arch"]): s for s in mine}
    lines = ["| pre-training | " + " | ".join(archs) + " |", "| --- |" + " ---: |" * len(archs)]
    show = compute if times else top1
    for label in row_order(mine, manifests):
        cells = " | ".join(show(by.get((label, a))) for a in archs)
        lines.append(f"| {REFERENCES.get(label, label)} | {cells} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("eval_dir", type=Path)
    parser.add_argument("--layout", choices=["rows", "budget", "arch"], default="rows")
    parser.add_argument("--arch", default="convnet", help="the architecture of the rows and budget layouts")
    parser.add_argument("--panel", default="cifar10:finetune", help="TARGET:MODE of the budget and arch layouts")
    parser.add_argument("--compute", action="store_true",
                        help="arch layout: mean pre-training / evaluation time per cell instead of top-1")
    args = parser.parse_args()
    summary = summarize(json.loads((args.eval_dir / "results.json").read_text()))  # also for an unfinished run
    manifests = set_manifests(args.eval_dir)
    target, _, mode = args.panel.partition(":")
    if args.layout == "rows":
        print(rows_table(summary, manifests, args.arch))
    elif args.layout == "budget":
        print(budget_table(summary, target, mode, args.arch))
    else:
        print(arch_table(summary, manifests, target, mode, args.compute, config_archs(args.eval_dir)))


if __name__ == "__main__":
    main()
