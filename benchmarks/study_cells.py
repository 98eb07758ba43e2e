"""Measure a study's evaluation cells for the sets it has finished, in a process of its own.

`ssdd reproduce` runs one stage at a time, and one study at a time per out_dir. On a small machine the
distillations of the `cpu` studies and their evaluation cells can run side by side instead: the study runs
its teacher and sets (`ssdd reproduce -c PRESET evaluate.config=`), and this script evaluates, with exactly
the study's evaluation settings, every set of the study that is finished so far, in
`OUT/evaluate/part-<name>`. Run it again later and it resumes there, adding the sets finished since. The
study's own evaluation, run last (`ssdd reproduce -c PRESET`), takes all these cells (`reuse`), as do the
other studies of the same out_dir; this script passes them the same way, so no cell is measured twice.

    OMP_NUM_THREADS=1 python benchmarks/study_cells.py study_cpu_equal
    python benchmarks/study_cells.py study_cpu_arch --dry-run     # the sets and settings it would use
    python benchmarks/study_cells.py study_cpu_arch --seeds 1     # one seed of every cell first
    torchrun --nproc_per_node 8 benchmarks/study_cells.py study_cpu_equal --device cuda   # 8 cells at a time

Under torchrun the cells are shared out among the processes, which may share one GPU (gloo then links
them). `--device` changes where the cells run, not which cells they are: each row records its device.

A set still being distilled (or not started) is left out; the teacher must be finished.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path

from ssdd.config import config_to_dict, load_config
from ssdd.evaluation.config import EvaluateConfig
from ssdd.evaluation.protocol import run_evaluate
from ssdd.run.distributed import is_main_process
from ssdd.study.config import StudyConfig
from ssdd.study.runner import other_evaluations, run_study, study_evaluation_config


def study_cells_config(preset: str, overrides: list[str]) -> tuple[EvaluateConfig, list[str]]:
    """The study's evaluation settings over its finished sets (out_dir: OUT/evaluate/part-<name>), and the
    names of the sets left out because they are not finished."""
    study = load_config(StudyConfig, preset, overrides)
    if not study.evaluate.config:
        raise SystemExit(f"{preset} has no evaluation")
    with contextlib.redirect_stdout(sys.stdout if is_main_process() else io.StringIO()):
        result = run_study(study, show_progress=False, dry_run=True)  # under torchrun, said once
    if result.teacher is None or any(s.kind == "teacher" and s.status != "cached" for s in result.stages):
        raise SystemExit("the study's teacher is not finished: run `ssdd reproduce` first")
    sets = [s for s in result.stages if s.kind == "distill"]
    cfg = study_evaluation_config(study, result.teacher, [Path(s.folder) for s in sets if s.status == "cached"])
    cfg.out_dir = str(Path(study.out_dir) / "evaluate" / f"part-{study.name or 'study'}")
    cfg.reuse = other_evaluations(Path(study.out_dir), Path(cfg.out_dir))
    return cfg, [s.name for s in sets if s.status != "cached"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset", help="a study preset or YAML file sharing an out_dir with others")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the study")
    parser.add_argument("--seeds", type=int, default=None,
                        help="measure only the first N of the study's seeds now (its evaluation takes them later)")
    parser.add_argument("--device", default=None, help="run the cells on this device (default: the study's)")
    parser.add_argument("--dry-run", action="store_true", help="print the settings and sets; measure nothing")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    cfg, waiting = study_cells_config(args.preset, args.overrides)
    if args.seeds is not None:
        cfg.seeds = min(cfg.seeds, args.seeds)  # seeds choose cells only: the study's own evaluation reuses them
    if args.device is not None:
        cfg.device = args.device
    if is_main_process():
        print(f"{len(cfg.distilled)} finished sets -> {cfg.out_dir}" + (f"; not finished: {', '.join(waiting)}"
                                                                         if waiting else ""))
    if args.dry_run:
        if not is_main_process():
            return
        import yaml

        print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
        return
    resume = (Path(cfg.out_dir) / "results.json").exists()
    run_evaluate(cfg, show_progress=not args.no_progress, resume=resume)


if __name__ == "__main__":
    sys.exit(main())
