"""The before/after table of benchmarks/gpu/speed.py, in markdown, from its JSON files (one per device call).

    python benchmarks/gpu/speed_table.py speed.json [speed_eval.json ...] [--out table.md]

The files are merged in order (a later file's parts win) and rendered: the device, the commits, the dates and
commands; per stage the old and new values, the speed-up, the achieved TFLOP/s and its fraction of the bf16
matrix rate measured in the same call, the peak GPU memory and the mean GPU utilisation; then the teacher's step
by part, the official KRR-ST code beside the new code, and how much of the full evaluation protocol finished.
docs/performance.md ("Benchmark") takes this output as it is.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

STAGES = (("teacher", "Teacher (`teacher_cifar100`)"), ("distill_krr_st", "KRR-ST (`distill_krr_st_cifar100`)"),
          ("distill_boost", "Boost (`cifar100`)"), ("mkdt", "MKDT (`mkdt_cifar100`)"),
          ("evaluate_cell", "Evaluation, one cell (`evaluate_full`)"))


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """A copy of `base` with `update` merged in, dictionaries key by key (the update's values win)."""
    out = dict(base)
    for key, value in update.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def number(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def gib(value: Any) -> str:
    return "n/a" if value is None else f"{value / 2**30:.1f}"


def util(entry: dict[str, Any]) -> str:
    gpu = entry.get("gpu")
    return "n/a" if not gpu else f"{gpu['util_mean']:.0f}"


def tflops(entry: dict[str, Any]) -> str:
    value = entry.get("tflops")
    return "n/a" if value is None else f"{value:.3g}"


def percent(entry: dict[str, Any]) -> str:
    fraction = entry.get("fraction_of_bf16")
    return "n/a" if fraction is None else f"{100 * fraction:.0f} %"


def pair(stage: dict[str, Any], read: Any) -> str:
    """'old / new' of one quantity."""
    return " / ".join(read(stage.get(side) or {}) for side in ("old", "new"))


def stage_rows(result: dict[str, Any]) -> list[str]:
    rows = ["| stage | unit | old | new | speed-up | TFLOP/s old / new | of bf16 rate, old / new | peak GiB old / new "
            "| GPU util % old / new |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    stages = result.get("stages") or {}
    for key, title in STAGES:
        stage = stages.get(key)
        if not stage:
            continue
        speedup = stage.get("speedup")
        rows.append(
            f"| {title} | {stage.get('unit', '')} | {number((stage.get('old') or {}).get('value'))} | "
            f"{number((stage.get('new') or {}).get('value'))} | {number(speedup) + 'x' if speedup else 'n/a'} | "
            f"{pair(stage, tflops)} | "
            f"{pair(stage, percent)} | "
            f"{pair(stage, lambda e: gib(e.get('peak_allocated_bytes')))} | {pair(stage, util)} |")
        for name, entry in variants(stage):
            rows.append(f"| {title}, new with {' '.join(entry.get('overrides') or [])} ({name}) | "
                        f"{stage.get('unit', '')} | | {number(entry.get('value'))} | "
                        f"{number(entry.get('speedup')) + 'x' if entry.get('speedup') else 'n/a'} | {tflops(entry)} | "
                        f"{percent(entry)} | {gib(entry.get('peak_allocated_bytes'))} | {util(entry)} |")
    return rows


def variants(stage: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """A stage's extra new-code runs (speed.py --variant), in the order run."""
    return [(name, entry) for name, entry in stage.items()
            if isinstance(entry, dict) and name not in ("old", "new") and "exit_code" in entry]


# outer steps of the presets (docs/method.md): the full runs the measured rates project to
PRESET_STEPS = {"distill_krr_st": 160_000, "distill_boost": 30_000}


def projections(result: dict[str, Any]) -> list[str]:
    """The presets' whole outer loops at the measured rates, plus the teacher cache's build scaled to the
    whole source (the build is a forward per image and view: linear in the images)."""
    lines = []
    for key, steps in PRESET_STEPS.items():
        stage = (result.get("stages") or {}).get(key) or {}
        parts = []
        for side in ("old", "new"):
            entry = stage.get(side) or {}
            if not entry.get("value"):
                continue
            minutes = steps / entry["value"] / 60
            cache = entry.get("teacher_cache_s")
            subset = next((int(o.split("=", 1)[1]) for o in entry.get("overrides") or []
                           if o.startswith("data.subset=")), None)
            if cache is not None and subset:
                build = cache * result.get("source_images", 50_000) / subset / 60
                parts.append(f"{side} {minutes + build:.1f} min ({minutes:.1f} of steps + {build:.1f} of teacher "
                             f"cache, its build of {cache:.1f} s on {subset:,} images scaled to the whole source)")
            else:
                parts.append(f"{side} {minutes:.1f} min")
        if parts:
            lines.append(f"{steps:,} outer steps of `{stage.get('preset')}` at these rates: {'; '.join(parts)}.")
    return lines


def header(result: dict[str, Any]) -> list[str]:
    commit = result.get("commit") or {}
    rate = result.get("bf16_matmul") or {}
    lines = [f"Device: {result.get('device', 'n/a')} (torch {result.get('torch', 'n/a')}, CUDA "
             f"{result.get('cuda') or 'n/a'}); old code {commit.get('old', 'n/a')}, new code "
             f"{commit.get('new', 'n/a')}; data: {result.get('data', 'n/a')}."]
    if rate:
        lines.append(f"Measured bf16 matrix rate: {rate['tflops']:.0f} TFLOP/s ({rate['n']}^3 products, median of "
                     f"{rate['repeats']}, {rate['timer']}).")
    for date, command in zip(result.get("dates") or [result.get("date")], result.get("commands")
                             or [result.get("command")], strict=False):
        lines.append(f"Run {date}: `{command}`")
    extra = {k: v for k, v in (result.get("new_args") or {}).items() if v}
    lines.append("New-code settings: " + ("; ".join(f"{k}: {' '.join(v)}" for k, v in extra.items())
                                          if extra else "defaults") + ".")
    return lines


def teacher_parts(result: dict[str, Any]) -> list[str]:
    """The new code's teacher step by part: the fast path (the top level of teacher_parts.py's JSON), and its
    plain path (`plain`, absent from older files) with the ratio plain / fast per part."""
    parts = ((result.get("teacher_parts") or {}).get("result")) or {}
    if not parts:
        return []
    ratio = parts.get("plain_over_fast") or {}

    def path(numbers: dict[str, Any], with_ratio: bool) -> str:
        cells = ", ".join(f"{name} {ms:.2f} ms" + (f" ({ratio[name]:.2f}x)" if with_ratio and name in ratio else "")
                          for name, ms in numbers["median_ms"].items())
        return f"{cells}; {numbers['step_ms']:.2f} ms per step = {numbers['images_per_s']:,.0f} images/s"

    timed = f"{parts['steps_timed']} (stopped at the deadline)" if parts.get("partial") else parts["steps"]
    lines = [f"Teacher step by part (new code, fast path, batch {parts['batch']}, {parts['timer']}, median of "
             f"{timed}): {path(parts, False)}. {parts['verdict']}."]
    if parts.get("plain"):
        lines.append(f"Teacher step by part, plain path (fast=off, compile=off; plain / fast in brackets): "
                     f"{path(parts['plain'], True)}. {parts['plain']['verdict']}.")
    check = parts.get("sync_check") or {}
    if check.get("synchronises") is not None:
        lines.append("Fast teacher step under torch.cuda.set_sync_debug_mode('error'): " + (
            f"synchronises in {check['part']} ({check['error']})" if check["synchronises"]
            else f"no host synchronisation in {check['steps']} steps") + ".")
    return lines


def official(result: dict[str, Any]) -> list[str]:
    entry = result.get("official_krr_st") or {}
    ratio = entry.get("ratio")
    if not ratio:
        return []
    return [f"KRR-ST against the official code on this device (`{(entry.get('settings') or {}).get('preset')}`): new "
            f"{number(entry['ssdd_steps_per_s']['median'])} steps/s, official "
            f"{number(entry['official_steps_per_s']['median'])} steps/s, ratio min / median / max "
            f"{number(ratio['min'])} / {number(ratio['median'])} / {number(ratio['max'])} "
            f"over {entry.get('pairs', 'n/a')} pairs{' (stopped at the deadline)' if entry.get('partial') else ''} "
            f"(official augmentation: {entry.get('official_aug')}; ssdd without its teacher cache, which blocks "
            f"this short would not repay)."]


def protocol(result: dict[str, Any]) -> list[str]:
    entry = result.get("protocol") or {}
    return [f"Full evaluation protocol (new code): {entry['statement']}."] if entry.get("statement") else []


def render(results: list[dict[str, Any]]) -> str:
    """The markdown of one or more speed.py JSON files (merged in order)."""
    merged: dict[str, Any] = {}
    for result in results:
        merged = merge(merged, result)
    merged["dates"] = [r.get("date") for r in results]
    merged["commands"] = [r.get("command") for r in results]
    if any(r.get("tiny") for r in results):
        merged["device"] = f"{merged.get('device')} (--tiny: a check of the machinery, not a measurement)"
    notes = [*projections(merged), *teacher_parts(merged), *official(merged), *protocol(merged)]
    skipped = {k: v for r in results for k, v in (r.get("parts_skipped") or {}).items()}
    if skipped:
        notes.append("Parts not measured: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()) + ".")
    lines = [*(f"- {line}" for line in header(merged)), "", *stage_rows(merged), "", *(f"- {n}" for n in notes)]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    text = render([json.loads(path.read_text()) for path in args.files])
    if args.out:
        args.out.write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
