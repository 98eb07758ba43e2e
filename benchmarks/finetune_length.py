"""Fine-tuning length at the `cpu` scale: top-1 against fine-tuning iterations, no pre-training vs full data.

    python benchmarks/finetune_length.py --teacher artifacts/teachers/cifar100_convnet32_cpu \
        --lengths 300 1000 3000 --seeds 2 --out benchmarks/results/finetune_length

Each seed pre-trains the reference rows of an evaluation preset once (`--config`, default evaluate_cpu;
`--rows`: a random initialisation, the tuned full-data row, and optionally the full-data row trained with
the distilled rows' recipe), then fine-tunes a copy of each on every
target for every length, with the preset's fine-tuning recipe (cosine over the run, crop + flip) and only
the iteration count changed, seeded as `ssdd evaluate` seeds its cells. The question it answers: from which
length on does full data's gain over no pre-training stop changing, so that pre-training and not the
fine-tuning budget decides the comparison. Results are written after every fine-tuning run and an
interrupted sweep continues where it stopped (finished runs are skipped); `results.json`, `table.md` and
`finetune_length.png` go to --out.

A length is a selection, so it is read off a validation split carved from each target's train split
(`--select-on validation`, the default: `validation.fraction=0.1` unless an override sets it; docs/protocol.md,
"Validation split"). `--select-on test` scores the test splits, as the sweep committed in
benchmarks/results/finetune_length did before the validation split existed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import torch

from ssdd.config import DataConfig, config_to_dict, load_config
from ssdd.data import load_split
from ssdd.evaluation.cell import PretrainSource, load_target, pretrain_network
from ssdd.evaluation.config import EvaluateConfig
from ssdd.evaluation.finetune import finetune
from ssdd.teacher import load_teacher

ROWS = {"no_pretrain": ("no pre-training", "black"), "full_data": ("full data, tuned recipe", "tab:green"),
        "full_data_same_recipe": ("full data, distilled rows' recipe", "tab:olive")}


def _key(row: str, target: str, seed: int, length: int, split: str = "test") -> str:
    return f"{row}/{target}/{seed}/{length}" + ("" if split == "test" else f"/{split}")


def sweep(args: argparse.Namespace) -> dict:
    overrides = list(args.overrides)
    if args.select_on == "validation" and not any(o.startswith("validation.fraction=") for o in overrides):
        overrides.append("validation.fraction=0.1")
    cfg = load_config(EvaluateConfig, args.config, [f"teacher={args.teacher}", *overrides])
    if args.select_on == "validation" and cfg.validation.fraction <= 0:
        raise SystemExit("--select-on validation needs validation.fraction > 0")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    done = {r["key"]: r for r in json.loads(path.read_text())["runs"]} if path.exists() else {}
    if {r.get("eval_split", "test") for r in done.values()} - {args.select_on}:
        raise SystemExit(f"{out} holds runs scored on another split than {args.select_on}; choose another --out")
    device = torch.device("cpu" if cfg.device in ("auto", "cpu") and not torch.cuda.is_available() else
                          "cuda" if cfg.device == "auto" else cfg.device)
    teacher = load_teacher(cfg.teacher, device)
    source_cfg = DataConfig(**{**config_to_dict(cfg.source), "resolution": teacher.resolution})
    targets = [load_target(t, teacher.resolution, cfg.seed, device, cfg.validation) for t in cfg.targets]
    source_images, source_targets = None, None
    model_cfg = cfg.models[0]
    for seed in range(cfg.seed, cfg.seed + args.seeds):
        for row in args.rows:
            todo = [(t, n) for t in targets for n in args.lengths if _key(row, t.name, seed, n, t.split) not in done]
            if not todo:
                continue
            if row != "no_pretrain" and source_images is None:
                source_images = load_split(source_cfg, source_cfg.train_split, cfg.seed).to(device).images
            if row == "full_data_same_recipe" and source_targets is None:
                source_targets = teacher.encode(source_images)
            start = time.perf_counter()
            backbone = pretrain_network(PretrainSource(row, row, None, {}), model_cfg, cfg, teacher, source_images,
                                        teacher.resolution, seed, device, source_targets)
            pretrain_s = time.perf_counter() - start
            for target, length in todo:
                start = time.perf_counter()
                generator = torch.Generator().manual_seed(seed * 1009 + 17)  # as ssdd evaluate seeds a cell
                recipe = replace(cfg.finetune, iterations=length, small_iterations=length)
                top1 = finetune(backbone, target.train, target.test, target.mean, target.std, recipe,
                                generator, train_size=target.train_size)["top1"]
                run = {"key": _key(row, target.name, seed, length, target.split), "row": row, "target": target.name,
                       "seed": seed, "iterations": length, "eval_split": target.split, "top1": top1,
                       "finetune_s": time.perf_counter() - start, "pretrain_s": pretrain_s}
                done[run["key"]] = run
                print(json.dumps(run), flush=True)
                _write(out, args, cfg, list(done.values()))
    return _write(out, args, cfg, list(done.values()))


def _write(out: Path, args: argparse.Namespace, cfg: EvaluateConfig, runs: list[dict]) -> dict:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = {"kind": "finetune_length", "date": datetime.date.today().isoformat(), "commit": commit,
              "threads": torch.get_num_threads(), "config": args.config, "overrides": args.overrides,
              "teacher": args.teacher, "finetune": config_to_dict(cfg.finetune),
              "validation": config_to_dict(cfg.validation), "runs": runs}
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    _table(out, runs)
    return result


def _summary(runs: list[dict]) -> dict[tuple[str, str, int], tuple[float, float, int]]:
    """(row, target, iterations) -> (mean, std, seeds)."""
    groups: dict[tuple[str, str, int], list[float]] = {}
    for r in runs:
        groups.setdefault((r["row"], r["target"], r["iterations"]), []).append(r["top1"])
    return {k: (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v)) for k, v in groups.items()}


def _table(out: Path, runs: list[dict]) -> None:
    summary = _summary(runs)
    targets = sorted({k[1] for k in summary})
    lengths = sorted({k[2] for k in summary})
    rows = [r for r in ROWS if any(k[0] == r for k in summary)]
    fulls = [r for r in rows if r != "no_pretrain"]
    lines = ["| target | iterations | " + " | ".join(ROWS[r][0] for r in rows) + " | "
             + " | ".join(f"{ROWS[r][0]} - no pre-training" for r in fulls) + " |",
             "| --- | --- | " + " | ".join("---" for _ in rows + fulls) + " |"]
    for target in targets:
        for n in lengths:
            got = {r: summary.get((r, target, n)) for r in rows}
            cells = [f"{s[0]:.2f} ± {s[1]:.2f} (n={s[2]})" if s else "-" for s in got.values()]
            none = got.get("no_pretrain")
            gains = [f"{got[r][0] - none[0]:+.2f}" if none and got[r] else "-" for r in fulls]
            lines.append(f"| {target} | {n:,} | " + " | ".join(cells + gains) + " |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    if not summary:
        return
    from ssdd.report.plots import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 3.2), squeeze=False)
    for ax, target in zip(axes[0], targets, strict=True):
        for row in rows:
            name, colour = ROWS[row]
            points = [(n, summary[(row, target, n)]) for n in lengths if (row, target, n) in summary]
            if points:
                ax.errorbar([n for n, _ in points], [s[0] for _, s in points], yerr=[s[1] for _, s in points],
                            marker="o", capsize=3, color=colour, label=name)
        ax.set(xscale="log", xlabel="fine-tuning iterations", ylabel="top-1 (%)", title=target)
        ax.set_xticks(lengths, [f"{n:,}" for n in lengths])  # the measured lengths, not log-scale minor labels
        ax.minorticks_off()
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out / "finetune_length.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="evaluate_cpu", help="evaluation preset or YAML (its finetune recipe)")
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--lengths", type=int, nargs="+", default=[300, 1000, 3000])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=["no_pretrain", "full_data"])
    parser.add_argument("--out", default="benchmarks/results/finetune_length")
    parser.add_argument("--select-on", choices=["validation", "test"], default="validation",
                        help="score a validation split carved from each target's train split (default), or the test "
                             "split")
    parser.add_argument("overrides", nargs="*", help="key=value settings of the evaluation preset")
    sweep(parser.parse_args())


if __name__ == "__main__":
    main()
