"""The generated tables of README.md and docs/results.md, made from the committed results under benchmarks/results.

    python benchmarks/results_tables.py            # rewrite every generated region in README.md and docs/results.md
    python benchmarks/results_tables.py --check    # exit 1 naming every region that differs (what the test runs)

A region is the text between `<!-- generated:NAME -->` and `<!-- /generated:NAME -->`; everything outside the
regions is left as written. Prose between `<!-- checked:NAME -->` and `<!-- /checked:NAME -->` may quote numbers
only if each one appears in a generated region of the same file or among `derived()`'s numbers, which are
recomputed here too (tests/benchmarks/test_results_tables.py enforces both).

Reads only JSON and YAML: nothing is trained. Samples seen in pre-training are counted the way the evaluation
fills its batches (`ssdd.evaluation.pretrain.epoch_batches`; a test checks the count against it): a set of
`views` pairs is shuffled every epoch and cut into batches of `pretrain.batch_size` (a last batch of a single
pair is dropped), so Boost's 2,160 views fill batches of 256 while a 96-image set fills one batch of 96.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ssdd.config import load_config
from ssdd.distill.config import DistillConfig
from ssdd.evaluation.gap import WITHIN_NOISE, gap_closed, within_noise
from ssdd.evaluation.report import summarize
from ssdd.evaluation.schedule import row_cell
from ssdd.presets import find_preset
from ssdd.report import formats as F

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path("benchmarks/results")
EQUAL = RESULTS / "study_cpu_equal/evaluate/evaluate-8aef7218"
BUDGET = RESULTS / "study_cpu_budget/evaluate/evaluate-bde4f5db"
ARCH = RESULTS / "study_cpu_arch/evaluate/evaluate-f1989b10"
VIT = RESULTS / "study_cpu_vit_partial"
GPU_CIFAR100 = RESULTS / "gpu_evaluate_bt80"
GPU_FLOWERS = RESULTS / "gpu_bt80_flowers"
GPU_FLOWERS_RESNET = RESULTS / "gpu_bt80_flowers_resnet18"
GPU_SETS = Path("artifacts/distilled/cifar100_resnet18_bt80_h200")
MKDT = RESULTS / "mkdt_cpu/table"
FINETUNE_LENGTH = RESULTS / "finetune_length/table.md"
CPU_TEACHER = Path("artifacts/teachers/cifar100_convnet32_cpu_e60")
GPU_TEACHER = Path("artifacts/teachers/cifar100_resnet18_bt80_h200")
REFERENCE = Path("artifacts/reference")  # the reference study, one stage per GPU session (benchmarks/README.md)
REFERENCE_SETS = ["boost", "krr_st", "mkdt", "high_loss", "kmeans", "random"]
REFERENCE_PANELS = [(t, m) for t in ("cifar10", "flowers102", "cifar100") for m in ("finetune", "linear_probe")]

NONE, FULL, TUNED = "no_pretrain", "full_data_same_recipe", "full_data"
REFERENCE_NAMES = {NONE: "no pre-training", FULL: "full data, distilled rows' recipe",
                   TUNED: "full data, tuned recipe"}
METHOD_NAMES = {"boost": "Boost", "krr_st": "KRR-ST", "random": "random subset", "mkdt": "MKDT",
                "kmeans": "k-means subset", "high_loss": "high-loss subset"}
TARGET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "flowers102": "Flowers-102"}
MODE_NAMES = {"finetune": "fine-tune", "linear_probe": "probe"}
PANELS = [("cifar10", "finetune"), ("cifar10", "linear_probe"), ("flowers102", "finetune"),
          ("flowers102", "linear_probe")]
MARK = re.compile(r"(<!-- generated:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /generated:(?P=name) -->)", re.S)
CHECKED = re.compile(r"<!-- checked:(?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- /checked:(?P=name) -->", re.S)
SET_FOLDER = re.compile(r"(?P<name>.+)_n(?P<budget>\d+)-[0-9a-f]{8}$")
NUMBER = re.compile(r"(?<![\w.@-])-?\d[\d,]*(?:\.\d+)?(?![\w@])")


# ---- reading ---------------------------------------------------------------------------------------------------

def _read_json(path: Path) -> Any:
    return json.loads((ROOT / path).read_text())


def study(folder: Path) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    """(label, arch, target, mode) -> the summary row (mean ± std over seeds) of an evaluation's results.json, with
    the samples each row's pre-training saw (`ssdd.evaluation.report.recorded_samples`, from its config.yaml)."""
    config = eval_config(folder) if (ROOT / folder / "config.yaml").is_file() else None
    return {(s["label"], s["arch"], s["target"], s["mode"]): s
            for s in summarize(_read_json(folder / "results.json"), config)}


def eval_config(folder: Path) -> dict[str, Any]:
    return yaml.safe_load((ROOT / folder / "config.yaml").read_text()) or {}


def samples_seen(s: dict[str, Any], config: dict[str, Any] | None = None) -> int | None:
    """Samples (stored views, or source images for the full-data rows) seen by a row's pre-training."""
    return s.get("pretrain_samples")


# ---- formatting ------------------------------------------------------------------------------------------------

def top1(s: dict[str, Any] | None) -> str:
    if s is None:
        return F.DASH
    return F.mean_std(s["top1_mean"], s["top1_std"], s["seeds"], with_n=False)


def percent(value: float | None) -> str:
    return F.DASH if value is None else f"{100 * value:.0f}"


def count(value: Any) -> str:
    return F.DASH if value is None else f"{int(value):,}"


def steps_and_samples(s: dict[str, Any], config: dict[str, Any]) -> str:
    """1,000 / 240,016: a row's pre-training SGD steps and the samples they saw."""
    return F.DASH if s["label"] == NONE else f"{count(s['pretrain_steps'])} / {count(samples_seen(s, config))}"


def row_name(label: str, s: dict[str, Any]) -> str:
    """Boost (150 outer steps), KRR-ST (2,000 outer steps), random subset, or a reference row's name."""
    if label in REFERENCE_NAMES:
        return REFERENCE_NAMES[label]
    name = METHOD_NAMES.get(s["method"], label)
    steps = s.get("distill_steps")
    unit = "iterations" if s["method"] == "mkdt" else "outer steps"  # MKDT's loop matches trajectories
    return f"{name} ({steps:,} {unit})" if steps else name


def table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def shown_gaps(rows: dict[tuple, dict[str, Any]], label: str, arch: str = "convnet",
               panels: list[tuple[str, str]] = PANELS) -> list[str]:
    """Gap closed per panel as the tables show it: percent, or WITHIN_NOISE where the panel's full-data row is within
    noise of no pre-training (evaluation.gap.within_noise, as the summaries and reports show it)."""
    out = []
    for (target, mode), g in zip(panels, gaps(rows, label, arch, panels), strict=True):
        none, full = (rows.get((x, arch, target, mode)) for x in (NONE, FULL))
        noisy = g is not None and none is not None and full is not None and within_noise(none, full)
        out.append(WITHIN_NOISE if noisy else percent(g))
    return out


def gaps(rows: dict[tuple, dict[str, Any]], label: str, arch: str = "convnet",
         panels: list[tuple[str, str]] = PANELS) -> list[float | None]:
    """Gap closed per panel: (row - no pre-training) / (full data, distilled rows' recipe - no pre-training)."""
    out = []
    for target, mode in panels:
        s, none, full = (rows.get((x, arch, target, mode)) for x in (label, NONE, FULL))
        out.append(None if s is None or none is None or full is None
                   else gap_closed(s["top1_mean"], none["top1_mean"], full["top1_mean"]))
    return out


# ---- the tables ------------------------------------------------------------------------------------------------

HEADLINE_ROWS = ["boost@100", "krr_st@100", "random@100", NONE, FULL, TUNED]


def headline() -> str:
    """README: the main equal-footing CPU study at N = 100, with gap closed and samples seen."""
    rows, config = study(EQUAL), eval_config(EQUAL)
    teacher = _read_json(CPU_TEACHER / "manifest.json")
    head = ["pre-training", *(f"{TARGET_NAMES[t]} {MODE_NAMES[m]}" for t, m in PANELS),
            "gap closed, % (the four columns)", "pre-training steps / samples seen", "n"]
    body = []
    for label in HEADLINE_ROWS:
        first = rows[(label, "convnet", *PANELS[0])]
        closed = " / ".join(shown_gaps(rows, label))
        body.append([row_name(label, first), *(top1(rows.get((label, "convnet", *p))) for p in PANELS),
                     "reference" if label in (NONE, FULL) else closed,
                     steps_and_samples(first, config),
                     str(first["seeds"])])
    iters = {t: rows[(NONE, "convnet", t, "finetune")]["finetune_iterations"] for t in ("cifar10", "flowers102")}
    subset = {t["name"]: t.get("subset", 0) for t in config["targets"]}
    boost = rows[("boost@100", "convnet", *PANELS[0])]
    small = rows[("krr_st@100", "convnet", *PANELS[0])]
    footing = (
        f"Footing: `study_cpu_equal`, N = {boost['budget']:g} image-equivalents per set; teacher: a "
        f"{teacher['epochs']}-epoch Barlow Twins ConvNet-{teacher['model']['width']} on CIFAR-100 (linear probe "
        f"{teacher['linear_probe']['top1']:.2f} %); every row pre-trains a ConvNet-{config['models'][0]['width']} "
        f"for {count(config['pretrain']['max_iterations'])} SGD steps, but Boost's {count(boost['views'])} views fill "
        f"batches of {config['pretrain']['batch_size']} while the {small['views']}-image sets fill batches of "
        f"{small['views']}, so the samples seen differ; fine-tuning {count(iters['cifar10'])} iterations on "
        f"CIFAR-10 (a fixed {count(subset['cifar10'])}-image subset) and {count(iters['flowers102'])} on "
        f"Flowers-102, probes {count(config['probe']['iterations'])} iterations; "
        f"{boost['device'].upper()} (2 cores); top-1 %, mean ± std over n seeds. Gap closed: a row's gain over no "
        f"pre-training as a share of the gain of full data with the distilled rows' recipe. Evaluation finished "
        f"{_read_json(EQUAL / 'stage.json')['finished'][:10]} (its stage.json); table by "
        f"`python benchmarks/results_tables.py`.")
    return table(head, body) + "\n\n" + textwrap.fill(footing, 115, break_long_words=False, break_on_hyphens=False)


def equal_rows() -> str:
    """docs/results.md: every row of `study_cpu_equal` with its compute and samples seen."""
    rows, config = study(EQUAL), eval_config(EQUAL)
    order = ordered_labels(rows, EQUAL)
    head = ["pre-training", "distill steps", "distill time", "pre-train steps", "samples seen", "pre-train time",
            "storage (img-eq)", "CKA", *(f"{TARGET_NAMES[t]} {MODE_NAMES[m]}" for t, m in PANELS)]
    body = []
    for label in order:
        first = rows[(label, "convnet", *PANELS[0])]
        ref = label in REFERENCE_NAMES
        body.append([REFERENCE_NAMES.get(label, label), F.DASH if ref else count(first.get("distill_steps")),
                     F.DASH if ref else F.seconds(first.get("distill_s")),
                     F.DASH if label == NONE else count(first.get("pretrain_steps")),
                     F.DASH if label == NONE else count(samples_seen(first, config)),
                     F.DASH if label == NONE else F.seconds(first.get("pretrain_s")),
                     F.image_equivalents(first.get("image_equivalents")), f"{first['cka_to_teacher']:.2f}",
                     *(top1(rows.get((label, "convnet", *p))) for p in PANELS)])
    return table(head, body)


def equal_gaps() -> str:
    """docs/results.md: gap closed of every `study_cpu_equal` row, with retention beside it."""
    rows = study(EQUAL)
    head = ["pre-training", *(f"{TARGET_NAMES[t]} {MODE_NAMES[m]}: gap closed / retention" for t, m in PANELS)]
    body = []
    for label in ordered_labels(rows, EQUAL):
        if label in (NONE, FULL):
            continue
        cells = []
        for p, g in zip(PANELS, shown_gaps(rows, label), strict=True):
            s = rows[(label, "convnet", *p)]
            cells.append(f"{g}{'' if g == WITHIN_NOISE else ' %'} / {percent(s.get('retention'))} %")
        body.append([REFERENCE_NAMES.get(label, label), *cells])
    return table(head, body)


def ordered_labels(rows: dict[tuple, dict[str, Any]], folder: Path | None = None) -> list[str]:
    """Sets in the order the evaluation's config.yaml names them (else alphabetical), then the reference rows."""
    labels = list(dict.fromkeys(k[0] for k in rows))
    named = []
    if folder is not None and (ROOT / folder / "config.yaml").is_file():
        for path in eval_config(folder).get("distilled") or []:
            found = SET_FOLDER.match(Path(path).name)  # runs/.../distill/boost-idk_n100-4129cbde -> boost-idk@100
            if found and f"{found['name']}@{found['budget']}" in labels:
                named.append(f"{found['name']}@{found['budget']}")
    sets = named + [x for x in labels if x not in named and x not in REFERENCE_NAMES]
    return sets + [x for x in REFERENCE_NAMES if x in labels]


def budget(target: str, mode: str) -> Callable[[], str]:
    def make() -> str:
        rows, config = study(BUDGET), eval_config(BUDGET)
        mine = {k: s for k, s in rows.items() if k[2:] == (target, mode)}
        budgets = sorted({s["budget"] for s in mine.values() if s.get("budget") is not None})
        methods = list(dict.fromkeys(s["method"] for s in mine.values() if s.get("budget") is not None))
        by = {(s["method"], s["budget"]): s for s in mine.values() if s.get("budget") is not None}
        head = ["pre-training", *(f"N = {b:g}" for b in budgets)]
        body = [[METHOD_NAMES.get(m, m), *(top1(by.get((m, b))) for b in budgets)] for m in methods]
        body.append(["stored samples m (Boost / KRR-ST, random)",
                     *(f"{count(by[('boost', b)]['m'])} / {count(by[('krr_st', b)]['m'])}" for b in budgets)])
        body.append(["samples seen in pre-training (Boost / KRR-ST, random)",
                     *(f"{count(samples_seen(by[('boost', b)], config))} / "
                       f"{count(samples_seen(by[('krr_st', b)], config))}" for b in budgets)])
        for label, name in REFERENCE_NAMES.items():
            ref = next((s for k, s in mine.items() if k[0] == label), None)
            if ref is not None:
                body.append([name, top1(ref), *([""] * (len(budgets) - 1))])
        return table(head, body)
    return make


def arch() -> str:
    rows = study(ARCH)
    archs = list(dict.fromkeys(m["name"] for m in eval_config(ARCH)["models"]))
    head = ["pre-training", *archs]
    body = [[REFERENCE_NAMES.get(label, label), *(top1(rows.get((label, a, "cifar10", "finetune"))) for a in archs)]
            for label in ordered_labels(rows, ARCH)]
    return table(head, body)


def arch_times() -> str:
    """Mean pre-training / fine-tuning wall-clock of a `study_cpu_arch` cell."""
    rows = study(ARCH)
    archs = list(dict.fromkeys(m["name"] for m in eval_config(ARCH)["models"]))

    def times(s: dict[str, Any] | None) -> str:
        if s is None:
            return F.DASH
        pretrain = F.DASH if s["label"] == NONE else F.seconds(s.get("pretrain_s"))
        return f"{pretrain} / {F.seconds(s.get('eval_s'))}"
    body = [[REFERENCE_NAMES.get(label, label), *(times(rows.get((label, a, "cifar10", "finetune"))) for a in archs)]
            for label in ordered_labels(rows, ARCH)]
    return table(["pre-training", *archs], body)


def vit() -> str:
    short, long = study(ARCH), study(VIT)
    labels = ordered_labels(long)
    iters = {x: next(s["finetune_iterations"] for k, s in d.items() if k[1] == "vit_small")
             for x, d in (("short", short), ("long", long))}
    none = long[(NONE, "vit_small", "cifar10", "finetune")]["top1_mean"]
    head = ["pre-training", f"{count(iters['short'])} iterations", f"{count(iters['long'])} iterations",
            f"vs no pre-training at {count(iters['long'])}"]
    body = []
    for label in labels:
        s = long[(label, "vit_small", "cifar10", "finetune")]
        body.append([REFERENCE_NAMES.get(label, label), top1(short.get((label, "vit_small", "cifar10", "finetune"))),
                     top1(s), F.DASH if label == NONE else f"{s['top1_mean'] - none:+.2f}"])
    return table(head, body)


def _gpu_steps() -> dict[str, Any]:
    """label -> outer steps of the GPU sets, from their manifests (the random subset has none)."""
    out = {}
    for manifest in sorted((ROOT / GPU_SETS).glob("*/manifest.json")):
        m = json.loads(manifest.read_text())
        out[f"{m['method']}@{m['budget']:g}"] = m.get("steps_done")
    return out


def gpu_name(label: str, steps: dict[str, Any]) -> str:
    if label in REFERENCE_NAMES:
        return REFERENCE_NAMES[label]
    method = label.split("@")[0]
    return f"{METHOD_NAMES.get(method, method)} ({steps[label]:,} outer steps)" if steps.get(label) else \
        METHOD_NAMES.get(method, method)


def gpu_cifar100() -> str:
    rows, config, steps = study(GPU_CIFAR100), eval_config(GPU_CIFAR100), _gpu_steps()
    head = ["pre-training", "fine-tune", "probe", "CKA to teacher", "pre-train steps / samples seen", "n"]
    body = []
    for label in ordered_labels(rows):
        ft, pr = rows[(label, "convnet", "cifar100", "finetune")], rows[(label, "convnet", "cifar100", "linear_probe")]
        body.append([gpu_name(label, steps), top1(ft), top1(pr), f"{ft['cka_to_teacher']:.3f}",
                     steps_and_samples(ft, config),
                     str(ft["seeds"])])
    return table(head, body)


def gpu_flowers() -> str:
    conv, res, config, steps = study(GPU_FLOWERS), study(GPU_FLOWERS_RESNET), eval_config(GPU_FLOWERS), _gpu_steps()
    head = ["pre-training", "ConvNet-128 fine-tune", "ConvNet-128 probe", "n", "ResNet-18 fine-tune",
            "ResNet-18 probe", "n", "pre-train steps / samples seen"]
    body = []
    for label in ordered_labels(conv):
        c = [conv[(label, "convnet", "flowers102", m)] for m in ("finetune", "linear_probe")]
        r = [res.get((label, "resnet18", "flowers102", m)) for m in ("finetune", "linear_probe")]
        body.append([gpu_name(label, steps), top1(c[0]), top1(c[1]), str(c[0]["seeds"]), top1(r[0]), top1(r[1]),
                     str(r[0]["seeds"]) if r[0] else F.DASH,
                     steps_and_samples(c[0], config)])
    return table(head, body)


def _paused(stage: str, counter: str) -> str | None:
    """'paused at epoch 412 of 1,000': a stage whose checkpoint waits in parts (benchmarks/gpu/checkpoint_parts.py)."""
    index = ROOT / REFERENCE / "parts" / stage / "index.json"
    if not index.is_file():
        return None
    saved = json.loads(index.read_text())
    files = saved.get("run_files", {})
    # the checkpoint's own counter: the top level of the structure the parts' index keeps (key, value pairs)
    done = dict((k, v) for k, v in saved["structure"].get("dict", []) if isinstance(k, str)).get(counter, 0)
    config = yaml.safe_load(files.get("config.yaml", "")) or {}
    section, key = ("optim", "epochs") if counter == "epoch" else ("outer", "steps")
    total = (config.get(section) or {}).get(key)
    return f"paused at {counter} {count(done)} of {count(total)}, its checkpoint in parts ({REFERENCE}/parts/{stage})"


def reference_stages() -> str:
    """Where each stage of the reference study stands, from what artifacts/reference holds."""
    body = []
    teacher = ROOT / REFERENCE / "teacher" / "manifest.json"
    if teacher.is_file():
        m = json.loads(teacher.read_text())
        state = f"finished: {count(m['epochs'])} epochs, linear probe {m['linear_probe']['top1']:.2f} %"
        if "wall_clock_s" in m:  # (an imported teacher says nothing of its training)
            state += f"; {F.seconds(m['wall_clock_s'])} on {m.get('device', 'an unnamed device')}"
    else:
        state = _paused("teacher", "epoch") or "not started"
    body.append(["teacher (`teacher_cifar100`)", state])
    for method in REFERENCE_SETS:
        manifest = ROOT / REFERENCE / "sets" / f"{method}_n100" / "manifest.json"
        if manifest.is_file():
            m = json.loads(manifest.read_text())
            parts = [f"finished: {count(m['steps_done'])} steps" if m.get("steps_done") else "finished",
                     *([f"{F.seconds(m['wall_clock_s'])} on {m.get('device', 'an unnamed device')}"]
                       if "wall_clock_s" in m else []),
                     *([f"fresh pool at steps {', '.join(count(x) for x in m['pool_rebuilt_at'])}"]
                       if m.get("pool_rebuilt_at") else [])]
            state = "; ".join(parts)
        else:
            state = _paused(method, "step") or "not started"
        body.append([f"{METHOD_NAMES[method]} at N = 100", state])
    for name, preset in (("evaluate", "evaluate_full"), ("evaluate_arch", "evaluate_full_arch")):
        cells = _measured_cells(REFERENCE / name)
        body.append([f"evaluation (`{preset}`)", f"{cells:,} cells measured" if cells else "not started"])
    return table(["stage", "state"], body)


def _measured_cells(folder: Path) -> int:
    """The cells (network x seed x pre-training source) an evaluation holds: those in results.json, and those its
    processes saved in cells/ before a deadline cut their round (merged by the next --resume)."""
    results = ROOT / folder / "results.json"
    rows = json.loads(results.read_text()) if results.is_file() else []
    return len({row_cell(row) for row in rows}) + len(list((ROOT / folder / "cells").glob("[!.]*.json")))


def reference_rows() -> str:
    """The reference evaluation's rows: top-1 on every panel, gap closed, the compute of each row."""
    folder = REFERENCE / "evaluate"
    rows, config = study(folder), eval_config(folder)
    head = ["pre-training", *(f"{TARGET_NAMES[t]} {MODE_NAMES[m]}" for t, m in REFERENCE_PANELS),
            "gap closed, % (the six columns)", "pre-training steps / samples seen", "n"]
    body = []
    for label in ordered_labels(rows, folder):
        first = next((rows[(label, "convnet", *p)] for p in REFERENCE_PANELS if (label, "convnet", *p) in rows), None)
        if first is None:
            continue
        closed = "reference" if label in REFERENCE_NAMES else " / ".join(shown_gaps(rows, label, "convnet",
                                                                                      REFERENCE_PANELS))
        body.append([row_name(label, first), *(top1(rows.get((label, "convnet", *p))) for p in REFERENCE_PANELS),
                     closed, steps_and_samples(first, config), str(first["seeds"])])
    return table(head, body)


def _has_rows(folder: Path) -> bool:
    results = ROOT / folder / "results.json"
    return results.is_file() and bool(json.loads(results.read_text()))


def reference_arch() -> str:
    """The reference sets pre-training each network of evaluate_full_arch, fine-tuned on CIFAR-10."""
    folder = REFERENCE / "evaluate_arch"
    rows = study(folder)
    archs = list(dict.fromkeys(k[1] for k in rows))
    head = ["pre-training", *(f"{a} fine-tune" for a in archs), "n"]
    body = []
    for label in ordered_labels(rows, folder):
        cells = [rows.get((label, a, "cifar10", "finetune")) for a in archs]
        first = next(c for c in cells if c is not None)
        body.append([row_name(label, first), *(top1(c) for c in cells), str(first["seeds"])])
    return table(head, body)


def reference() -> str:
    """docs/results.md: the reference study's stages, and its tables once its evaluations have cells."""
    parts = [reference_stages()]
    if _has_rows(REFERENCE / "evaluate"):
        parts.append(reference_rows())
    if _has_rows(REFERENCE / "evaluate_arch"):
        parts.append(reference_arch())
    return "\n\n".join(parts)


def mkdt() -> str:
    rows = study(MKDT)
    wanted = ["mkdt@100", "high-loss-subset@100", "boost@100", "krr_st@100", "random@100", NONE, TUNED]
    head = ["pre-training", *(f"{TARGET_NAMES[t]} {MODE_NAMES[m]}" for t, m in PANELS), "CKA", "n"]
    body = []
    for label in wanted:
        first = rows[(label, "convnet", *PANELS[0])]
        body.append([REFERENCE_NAMES.get(label, label) + (" (2 epochs)" if label == TUNED else ""),
                     *(top1(rows.get((label, "convnet", *p))) for p in PANELS),
                     f"{first['cka_to_teacher']:.3f}", str(first["seeds"])])
    return table(head, body)


def finetune_length() -> str:
    """The table `benchmarks/finetune_length.py` wrote beside its results."""
    return (ROOT / FINETUNE_LENGTH).read_text().strip()


GENERATORS: dict[str, dict[str, Callable[[], str]]] = {
    "README.md": {"headline": headline},
    "docs/results.md": {
        "equal": equal_rows, "equal-gaps": equal_gaps,
        "budget-cifar10-probe": budget("cifar10", "linear_probe"),
        "budget-flowers102-probe": budget("flowers102", "linear_probe"),
        "budget-cifar10-finetune": budget("cifar10", "finetune"),
        "budget-flowers102-finetune": budget("flowers102", "finetune"),
        "arch": arch, "arch-times": arch_times, "vit": vit, "gpu-cifar100": gpu_cifar100, "gpu-flowers": gpu_flowers,
        "finetune-length": finetune_length, "mkdt": mkdt, "reference": reference,
    },
}


# ---- numbers prose may quote -----------------------------------------------------------------------------------

def derived() -> dict[str, float]:
    """Numbers the prose quotes that no table shows, recomputed from the same results."""
    equal, config = study(EQUAL), eval_config(EQUAL)
    budget_rows, budget_config = study(BUDGET), eval_config(BUDGET)

    def mean(rows: dict, label: str, target: str, mode: str) -> float:
        return rows[(label, "convnet", target, mode)]["top1_mean"]

    def seen(rows: dict, label: str, cfg: dict) -> int:
        return samples_seen(rows[(label, "convnet", "cifar10", "finetune")], cfg)

    probes = [p for p in PANELS if p[1] == "linear_probe"]
    out = {
        "equal-steps probe lead of Boost (basis lr x0.01) over KRR-ST, CIFAR-10":
            mean(equal, "boost-idk-1k-blr0.01@100", "cifar10", "linear_probe")
            - mean(equal, "krr_st-1k@100", "cifar10", "linear_probe"),
        "equal-steps probe lead of Boost (basis lr x0.01) over KRR-ST, Flowers-102":
            mean(equal, "boost-idk-1k-blr0.01@100", "flowers102", "linear_probe")
            - mean(equal, "krr_st-1k@100", "flowers102", "linear_probe"),
        "Boost's samples seen over KRR-ST's, N = 100":
            seen(equal, "boost@100", config) / seen(equal, "krr_st@100", config),
        "Boost's samples seen over KRR-ST's, N = 25":
            seen(budget_rows, "boost@25", budget_config) / seen(budget_rows, "krr_st@25", budget_config),
    }
    out["equal-steps probe lead of Boost (preset basis lr) over KRR-ST, CIFAR-10"] = \
        mean(equal, "boost-idk-1k@100", "cifar10", "linear_probe") \
        - mean(equal, "krr_st-1k@100", "cifar10", "linear_probe")
    out["full data's CIFAR-10 fine-tuning gain over no pre-training"] = \
        mean(equal, FULL, "cifar10", "finetune") - mean(equal, NONE, "cifar10", "finetune")
    gpu_teacher = _read_json(GPU_TEACHER / "manifest.json")
    out["GPU teacher epochs"] = gpu_teacher["epochs"]
    out["GPU teacher probe"] = gpu_teacher["linear_probe"]["top1"]
    for method, preset in (("krr_st", "distill_krr_st_cifar100"), ("boost", "cifar100")):
        published = load_config(DistillConfig, str(find_preset(preset))).outer.steps
        ran = next(v for k, v in _gpu_steps().items() if k.startswith(method + "@"))
        out[f"{method} published outer steps"] = published
        out[f"{method} GPU outer steps, % of published"] = 100 * ran / published
    for label in ("boost@100", "random@100", "krr_st@100"):
        for (target, mode), g in zip(PANELS, gaps(equal, label), strict=True):
            if (target, mode) in probes and g is not None:
                out[f"gap closed % of {label}, {target} probe"] = 100 * g
    for target, mode in probes:
        out[f"Boost's probe lead over KRR-ST, {target}"] = \
            mean(equal, "boost@100", target, mode) - mean(equal, "krr_st@100", target, mode)
        out[f"Boost's probe lead over random, {target}"] = \
            mean(equal, "boost@100", target, mode) - mean(equal, "random@100", target, mode)
    out.update(_equal_extras(equal, mean))
    out.update(_budget_extras(budget_rows, mean))
    out.update(_arch_extras(study(ARCH)))
    return out


def _equal_extras(equal: dict, mean: Callable[..., float]) -> dict[str, float]:
    out = {"cost of the identity-only kernel at 150 steps, CIFAR-10 probe":
           mean(equal, "boost@100", "cifar10", "linear_probe")
           - mean(equal, "boost-idk@100", "cifar10", "linear_probe")}
    labels = [mean(equal, "random@100", *p) - mean(equal, "random_supervised@100", *p) for p in PANELS]
    out["labels' cost, smallest"], out["labels' cost, largest"] = min(labels), max(labels)
    pretrain = {x: equal[(x, "convnet", *PANELS[0])]["pretrain_s"] for x in ("boost@100", "krr_st@100", "random@100")}
    for other in ("krr_st@100", "random@100"):
        out[f"Boost's pre-training time over {other}'s"] = pretrain["boost@100"] / pretrain[other]
    return out


def _budget_extras(rows: dict, mean: Callable[..., float]) -> dict[str, float]:
    out: dict[str, float] = {}
    budgets = sorted({int(s["budget"]) for s in rows.values() if s.get("budget") is not None})
    for target, mode in PANELS:
        for n in budgets:
            out[f"Boost over random, N = {n}, {target} {mode}"] = \
                mean(rows, f"boost@{n}", target, mode) - mean(rows, f"random@{n}", target, mode)
            out[f"KRR-ST over random, N = {n}, {target} {mode}"] = \
                mean(rows, f"krr_st@{n}", target, mode) - mean(rows, f"random@{n}", target, mode)
        for method in ("boost", "krr_st", "random"):
            out[f"{method} from N = {budgets[-2]} to {budgets[-1]}, {target} {mode}"] = \
                mean(rows, f"{method}@{budgets[-1]}", target, mode) \
                - mean(rows, f"{method}@{budgets[-2]}", target, mode)
        none, full = mean(rows, NONE, target, mode), mean(rows, FULL, target, mode)
        closed = gap_closed(mean(rows, f"boost@{budgets[-1]}", target, mode), none, full)
        if closed is not None:
            out[f"gap closed % of Boost at N = {budgets[-1]}, {target} {mode}"] = 100 * closed
    sets = [s["top1_mean"] for k, s in rows.items() if k[2:] == ("cifar10", "finetune") and s.get("budget")]
    out["CIFAR-10 fine-tuning of every set, lowest"], out["CIFAR-10 fine-tuning of every set, highest"] = \
        min(sets), max(sets)
    return out


def _arch_extras(rows: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for (label, arch, target, mode), s in rows.items():
        if label in REFERENCE_NAMES:
            continue
        for ref in (NONE, "random@100"):
            other = rows.get((ref, arch, target, mode))
            if other is not None and ref != label:
                out[f"{label} over {ref} on {arch}"] = s["top1_mean"] - other["top1_mean"]
    return out


def _plain(token: str) -> str:
    """'1,000' -> '1000', '-1.50' -> '1.5', '2.0' -> '2': how a number is compared."""
    token = token.replace(",", "").lstrip("-")
    return token.rstrip("0").rstrip(".") if "." in token else token


def numbers(text: str) -> set[str]:
    """Every number written in `text`, compared without sign, thousands separators or trailing zeros."""
    return {_plain(n) for n in NUMBER.findall(text)}


def roundings(value: float, decimals: int) -> set[str]:
    """A number as prose may write it: rounded to `decimals` or fewer decimals."""
    return {_plain(f"{abs(value):.{d}f}") for d in range(decimals + 1)}


def shown_numbers(tables: list[str], values: dict[str, float]) -> set[str]:
    """The numbers of every generated region of `tables` and of `values`, each also rounded to fewer decimals."""
    shown: set[str] = set()
    for text in tables:
        for m in MARK.finditer(text):
            for token in NUMBER.findall(m.group("body")):
                plain = token.replace(",", "").lstrip("-")
                shown |= roundings(float(plain), len(plain.partition(".")[2]))
    for value in values.values():
        shown |= roundings(value, 2)
    return shown


def unbacked_numbers(text: str, tables: list[str], values: dict[str, float]) -> dict[str, set[str]]:
    """checked region of `text` -> the numbers it quotes that no generated region of `tables` (the generated
    files' texts) shows and `derived()` lacks."""
    shown = shown_numbers(tables, values)
    found = {m.group("name"): numbers(m.group("body")) - shown for m in CHECKED.finditer(text)}
    return {name: missing for name, missing in found.items() if missing}


# ---- rewriting -------------------------------------------------------------------------------------------------

def render(text: str, generators: dict[str, Callable[[], str]]) -> str:
    """`text` with every generated region's body replaced by its generator's output; every generator must have a
    region and every region a generator."""
    names = [m.group("name") for m in MARK.finditer(text)]
    missing, unknown = sorted(set(generators) - set(names)), sorted(set(names) - set(generators))
    if missing or unknown:
        raise ValueError(f"regions without a marker: {missing}; markers without a generator: {unknown}")
    return MARK.sub(lambda m: m.group(1) + generators[m.group("name")]() + "\n" + m.group(4), text)


def drift(root: Path = ROOT) -> list[str]:
    """'FILE: REGION' for every generated region whose text differs from what the results give now, and
    'FILE: checked REGION quotes N' for every quoted number nothing backs."""
    problems = []
    texts = {name: (root / name).read_text() for name in GENERATORS}
    fresh = {name: render(texts[name], generators) for name, generators in GENERATORS.items()}
    values = derived()
    for name in GENERATORS:
        old = {m.group("name"): m.group("body") for m in MARK.finditer(texts[name])}
        new = {m.group("name"): m.group("body") for m in MARK.finditer(fresh[name])}
        problems += [f"{name}: {region}" for region in new if new[region] != old.get(region)]
        problems += [f"{name}: checked {region} quotes {', '.join(sorted(nums))}"
                     for region, nums in unbacked_numbers(fresh[name], list(fresh.values()), values).items()]
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a region has drifted")
    args = parser.parse_args()
    if args.check:
        problems = drift()
        for problem in problems:
            print(f"drifted: {problem}", file=sys.stderr)
        sys.exit(1 if problems else 0)
    for name, generators in GENERATORS.items():
        path = ROOT / name
        path.write_text(render(path.read_text(), generators))
        print(f"wrote {len(generators)} region(s) of {name}")


if __name__ == "__main__":
    main()
