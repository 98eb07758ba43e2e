"""The `ssdd` command line: one subcommand per pipeline stage.

    ssdd teacher --config teacher_cpu optim.epochs=20 [--resume]
    ssdd distill --config cifar100 teacher=runs/teacher_cifar100/teacher [--resume]
    ssdd experts --config experts_cpu teacher=runs/teacher_cpu/teacher [--resume]
    ssdd evaluate --config evaluate_cpu --distilled runs/full/boost_n100
    ssdd show runs/full/boost_n100
    ssdd report runs/evaluate [--out DIR] [--teacher DIR] [--distilled DIR ...]
    ssdd presets [NAME]
    ssdd import-teacher barlow_twins_resnet18_cifar100.pt --format krr_st --dataset cifar100 --out DIR
    ssdd import-distilled synthetic_data/cifar100/krr_st --out runs/imported/krr_st_cifar100
    ssdd export runs/full/boost_n100 --out exports/boost_n100
    ssdd check

`--config` takes a YAML file or the name of a packaged preset (`ssdd presets` lists them).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ssdd import __version__

# each configured command's example overrides in its --help (tests/cli/test_commands.py loads each with its schema)
OVERRIDE_EXAMPLES = {"teacher": "optim.epochs=10 data.path=data/cifar100.npz",
                     "distill": "budget=100 outer.steps=1000",
                     "experts": "num_experts=10 epochs=5",
                     "evaluate": "seeds=1 finetune.iterations=1000",
                     "reproduce": "out_dir=runs/mine seed=1"}


def _add_config_args(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--config", "-c", metavar="FILE|PRESET",
                        help="a YAML file or a packaged preset name (`ssdd presets` lists them); "
                             "omitted = built-in defaults")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help=f"override any config value, e.g. {OVERRIDE_EXAMPLES[command]}")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def _config(args: argparse.Namespace, schema: type, patch: Callable[[Any], None] | None = None) -> Any:
    """The validated config of a command (after `patch`); None after printing it for --print-config."""
    import yaml

    from ssdd.config import ConfigError, config_to_dict, find_preset, load_config

    try:
        cfg = load_config(schema, args.config, args.overrides)
    except ConfigError:
        if args.config and find_preset(str(args.config)) is not None:
            from ssdd.presets import preset_commands

            commands = preset_commands(str(args.config))
            if commands and args.command not in commands:  # the preset of another command
                raise ConfigError(f"{args.config} is a preset of `ssdd {commands[0]}`, not of `ssdd {args.command}` "
                                  f"(`ssdd presets` lists each preset's command)") from None
        raise
    if patch is not None:
        patch(cfg)
    if args.print_config:
        print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), end="")
        return None
    return cfg


def _cmd_teacher(args: argparse.Namespace) -> int:
    from ssdd.teacher.config import TeacherConfig
    from ssdd.teacher.train import train_teacher

    if (cfg := _config(args, TeacherConfig)) is not None:
        train_teacher(cfg, resume=args.resume, show_progress=not args.no_progress)
    return 0


def _cmd_distill(args: argparse.Namespace) -> int:
    from ssdd.distill.config import DistillConfig
    from ssdd.distill.run import run_distill

    if (cfg := _config(args, DistillConfig)) is not None:
        run_distill(cfg, resume=args.resume, show_progress=not args.no_progress)
    return 0


# the methods `ssdd distill` runs, by name: importing the registry imports torch (3 s), which `ssdd distill
# --help` should not wait for (tests/cli/test_commands.py checks that this is the registry's list)
DISTILL_METHODS = ("boost", "high_loss", "kmeans", "krr_st", "mkdt", "random", "random_supervised")


def _distill_description() -> str:
    """`ssdd distill --help`'s description: the methods it runs (the registry's when it is already imported,
    a plugin's method included; not those whose sets another command writes, such as `imported`)."""
    methods = list(DISTILL_METHODS)
    if "ssdd.distill" in sys.modules:
        from ssdd.distill.registry import methods_where

        methods = methods_where(lambda m: m.written_by is None)
    from ssdd.plugins import plugin_modules  # named, not imported (that would import torch)

    plugins = ", ".join(module for module, _ in plugin_modules())
    return (f"Distil the source into a small set. Methods (method=NAME): {', '.join(methods)}"
            + (f", and those of the plugins {plugins}." if plugins else "."))


def _cmd_experts(args: argparse.Namespace) -> int:
    from ssdd.experts.config import ExpertsConfig
    from ssdd.experts.train import train_experts

    if (cfg := _config(args, ExpertsConfig)) is not None:
        train_experts(cfg, resume=args.resume, show_progress=not args.no_progress)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ssdd.evaluation.config import EvaluateConfig
    from ssdd.evaluation.protocol import run_evaluate

    def add_distilled(cfg: EvaluateConfig) -> None:
        cfg.distilled = [*cfg.distilled, *args.distilled]

    cfg = _config(args, EvaluateConfig, add_distilled)
    if cfg is None:
        return 0
    if args.report_only:
        from pathlib import Path

        from ssdd.evaluation.report import report_from_results

        print(report_from_results(Path(cfg.out_dir)))
        return 0
    if args.processes != "1":  # N processes of this machine run the cells N at a time (ssdd.evaluation.launch)
        from ssdd.evaluation.launch import process_count, run_processes

        flags = [flag for flag, on in (("--resume", args.resume), ("--no-progress", args.no_progress),
                                       ("--allow-mismatch", args.allow_mismatch)) if on]
        if (count := process_count(cfg, args.processes)) > 1:
            return run_processes(cfg, count, flags)
    run_evaluate(cfg, show_progress=not args.no_progress, resume=args.resume, allow_mismatch=args.allow_mismatch)
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from ssdd.study import StudyConfig, run_study

    if (cfg := _config(args, StudyConfig)) is not None:
        result = run_study(cfg, show_progress=not args.no_progress, dry_run=args.dry_run)
        return 0 if result.finished or args.dry_run else 3
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from ssdd.cli.show import show_distilled

    for path in show_distilled(args.directory, args.out, args.images):
        print(path)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ssdd.report import build_report
    from ssdd.study.runner import nothing_to_report, study_evaluation

    directory, out = Path(args.directory), args.out
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such folder (pass an `ssdd evaluate` out_dir, or an "
                                f"`ssdd reproduce` study's)")
    evaluation = None if (directory / "results.json").is_file() else study_evaluation(directory)
    if evaluation is not None:  # a study's folder: the report of its evaluation, written there as the study does
        print(f"{directory} is a study's folder: the report of its evaluation, {evaluation}")
        directory, out = evaluation, out or args.directory
    elif not (directory / "results.json").is_file() and (directory / "study.yaml").is_file():
        raise FileNotFoundError(nothing_to_report(directory))
    for path in build_report(directory, out, args.teacher, args.distilled):
        print(path)
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from ssdd.cli.check import run_check

    return run_check(args.data)


def _cmd_import_distilled(args: argparse.Namespace) -> int:
    from ssdd.cli.interop_args import import_options
    from ssdd.distill.interop import import_distilled, import_summary

    print(import_summary(import_distilled(args.source, args.out, args.format, **import_options(args)), args.out))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from ssdd.distill.interop import export_distilled

    index = export_distilled(args.directory, args.out)
    print(f"{index['label']}: {len(index['entries'])} PNG images ({index['m']} x {len(index['views'])} view(s)), "
          f"{'targets.npy' if 'targets' in index else 'labels.npy'} and index.json in {args.out} "
          f"(PNG is 8-bit: max error {index['png']['max_abs_error_in_range']:.4f} in [0,1], "
          f"{index['png']['clipped_values']} values clipped)")
    return 0


def _cmd_import_teacher(args: argparse.Namespace) -> int:
    from ssdd.run.progress import show_phases
    from ssdd.teacher.importers import import_teacher, options_from_args

    with show_phases(True):  # reading the probe data and the probe take a while: say so
        import_teacher(options_from_args(args))
    return 0


def _cmd_presets(args: argparse.Namespace) -> int:
    from ssdd.presets import preset_table, preset_text

    print(preset_text(args.name) if args.name else preset_table(), end="" if args.name else "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from ssdd.cli.parser import Parser

    parser = Parser(prog="ssdd", description="Self-supervised dataset distillation (KRR-ST, Boost, MKDT).")
    parser.add_argument("--version", action="version", version=f"ssdd {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error instead of its one-line message (also SSDD_TRACEBACK=1; "
                             "accepted anywhere on the line)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    teacher = sub.add_parser("teacher", help="train the Barlow Twins teacher (torchrun for several GPUs)")
    _add_config_args(teacher, "teacher")
    teacher.add_argument("--resume", action="store_true", help="continue the run in out_dir from its checkpoint")
    teacher.add_argument("--no-progress", action="store_true",
                         help="no progress bar or phase lines (epoch lines and logs stay)")
    teacher.set_defaults(func=_cmd_teacher)

    distill = sub.add_parser("distill", help="distil the source into a small set (method=NAME; `ssdd distill "
                                             "--help` lists the methods)")
    distill.describe = _distill_description
    _add_config_args(distill, "distill")
    distill.add_argument("--resume", action="store_true", help="continue the run in out_dir from its checkpoint")
    distill.add_argument("--no-progress", action="store_true", help="no progress bar or phase lines")
    distill.set_defaults(func=_cmd_distill)

    experts = sub.add_parser("experts", help="train MKDT's expert trajectories (students regressing the teacher's "
                                             "representations) for `distill method=mkdt`")
    _add_config_args(experts, "experts")
    experts.add_argument("--resume", action="store_true",
                         help="continue the run in out_dir (or add experts with a larger num_experts)")
    experts.add_argument("--no-progress", action="store_true", help="no progress bar or phase lines")
    experts.set_defaults(func=_cmd_experts)

    evaluate = sub.add_parser("evaluate", help="pre-train on distilled sets, fine-tune and probe on targets")
    _add_config_args(evaluate, "evaluate")
    evaluate.add_argument("--distilled", "-d", nargs="+", default=[], metavar="DIR",
                          help="distilled artifact folders (added to the config's list)")
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar or phase lines")
    evaluate.add_argument("--resume", action="store_true",
                          help="keep the finished cells of out_dir/results.json and run only the missing ones")
    evaluate.add_argument("--report-only", action="store_true",
                          help="rebuild summary.md/json and results.png from out_dir/results.json, train nothing")
    evaluate.add_argument("--allow-mismatch", action="store_true",
                          help="score sets distilled with another teacher or from another source anyway "
                               "(refused by default: their rows are not comparable)")
    evaluate.add_argument("--processes", default="1", metavar="N|auto",
                          help="run N cells at a time, on N processes of this machine sharing its GPUs (the rows "
                               "are those of one process); auto: one per cell, at most one per CPU core")
    evaluate.set_defaults(func=_cmd_evaluate)

    reproduce = sub.add_parser("reproduce", help="a whole study from one preset: teacher -> distill -> evaluate -> "
                                                 "report, each stage cached")
    _add_config_args(reproduce, "reproduce")
    reproduce.add_argument("--no-progress", action="store_true",
                           help="no progress bars or phase lines (stage lines stay)")
    reproduce.add_argument("--dry-run", action="store_true",
                           help="run nothing: say which stages are cached, would resume or would run")
    reproduce.set_defaults(func=_cmd_reproduce)

    show = sub.add_parser("show", help="PNG grid of a distilled set's images and views, and its loss curve")
    show.add_argument("directory", help="a distilled artifact folder (from ssdd distill)")
    show.add_argument("--out", "-o", default=None, metavar="FOLDER",
                      help="folder for images.png and loss.png, created (default ./show-<DIR's name>)")
    show.add_argument("--images", "-n", type=int, default=8, help="how many distilled images to draw")
    show.set_defaults(func=_cmd_show)

    report = sub.add_parser("report", help="report.md and a self-contained report.html of an evaluation folder")
    report.add_argument("directory", help="an `ssdd evaluate` out_dir (results.json, config.yaml), or a study's "
                                          "(`ssdd reproduce`; its evaluation is reported, into it)")
    report.add_argument("--out", "-o", default=None, help="output folder (default DIR)")
    report.add_argument("--teacher", default=None, metavar="DIR",
                        help="the teacher folder (default: the one DIR/config.yaml names)")
    report.add_argument("--distilled", "-d", nargs="+", default=None, metavar="DIR",
                        help="the distilled folders (default: those DIR/config.yaml names)")
    report.set_defaults(func=_cmd_report)

    from ssdd.cli.import_teacher_args import add_import_teacher_arguments

    import_teacher = sub.add_parser("import-teacher", help="turn a KRR-ST, solo-learn or state-dict checkpoint "
                                    "into an ssdd teacher artifact")
    add_import_teacher_arguments(import_teacher)
    import_teacher.set_defaults(func=_cmd_import_teacher)

    presets = sub.add_parser("presets", help="list the packaged YAML presets (for --config), or print one")
    presets.add_argument("name", nargs="?", default=None, help="a preset to print (with or without .yaml)")
    presets.set_defaults(func=_cmd_presets)

    from ssdd.cli.interop_args import add_export_arguments, add_import_arguments

    import_distilled = sub.add_parser("import-distilled", help="bring a distilled set made elsewhere (KRR-ST's "
                                      "x_syn.pt/y_syn.pt, an image folder) into an ssdd artifact")
    add_import_arguments(import_distilled)
    import_distilled.set_defaults(func=_cmd_import_distilled)

    export = sub.add_parser("export", help="write a distilled set's images (PNG, every view), targets and index.json")
    add_export_arguments(export)
    export.set_defaults(func=_cmd_export)

    check = sub.add_parser("check", help="verify the installation and say what to fix")
    check.add_argument("--data", nargs="*", default=None, help="extra .npz files or folders to look at")
    check.set_defaults(func=_cmd_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from ssdd.cli.errors import (
        EXIT_INTERRUPTED,
        EXIT_TERMINATED,
        Terminated,
        classify,
        peer_stopped,
        speaks_for_the_run,
        terminated_as_interrupt,
    )
    from ssdd.cli.parser import is_override, move_overrides

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line, before or after the command
    args, extra = parser.parse_known_args([a for a in argv if a != "--debug"])
    debug = debug or bool(os.environ.get("SSDD_TRACEBACK"))
    # key=value overrides may also follow flags (`ssdd distill -c x.yaml --no-progress lr=0.1`), also a flag
    # taking several values (`ssdd evaluate --distilled A B out_dir=X`)
    if hasattr(args, "overrides") and all(is_override(e) for e in extra):
        args.overrides = move_overrides(args, extra)
    elif extra:  # the command's own usage, not the top level's
        (choices,) = [a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        hint = ""
        if hasattr(args, "overrides") and any(e.startswith("--") for e in extra):
            hint = (f" (settings are key=value overrides, e.g. {OVERRIDE_EXAMPLES[args.command].split()[0]}; "
                    f"`ssdd {args.command} --print-config` shows them all)")
        unknown = [e for e in extra if not is_override(e)]  # the overrides among them are fine
        choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    from ssdd.run.launched import torchrun_env_problem

    if (problem := torchrun_env_problem()) is not None and args.command != "check":  # from every process: no job
        print(f"ssdd {args.command}: error: {problem}", file=sys.stderr)
        return 2
    try:
        with terminated_as_interrupt():
            return int(args.func(args) or 0)
    except KeyboardInterrupt as stop:
        try:  # imports torch: only when needed, so listing stays fast; it may be what the interrupt cut short
            from ssdd.run.guard import interrupt_message

            kept = interrupt_message(args.command)
        except BaseException:  # torch half imported (Ctrl-C during its import): nothing ran yet
            kept = "before any work began: run the command again"
        if speaks_for_the_run():  # one line for the run, not one per process (all get the signal)
            how = "terminated (SIGTERM)" if isinstance(stop, Terminated) else "interrupted"
            print(f"ssdd {args.command}: {how} ({kept})", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED
    except Exception as exc:
        # every error is one line and an exit code (ssdd.cli.errors, README "Reliability"); --debug or
        # SSDD_TRACEBACK=1 shows where it came from
        if debug:
            raise
        code, message = classify(exc)
        if peer_stopped(exc):  # a torchrun process died: say so, and what the run kept
            from ssdd.run.guard import interrupt_message

            said = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            message = (f"another process of this run stopped, or lost its connection ({said}); "
                       f"{interrupt_message(args.command)}")
        from ssdd.run.distributed import is_main_process

        if is_main_process():  # under torchrun every rank fails alike: one line, from rank 0
            print(f"ssdd {args.command}: error: {message}", file=sys.stderr)
        return code
