"""Logging a user can watch: timed phase lines (ssdd.run.progress) and optional TensorBoard scalars (ssdd.run.tblog)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from tqdm.auto import tqdm

from ssdd.cli import main
from ssdd.config import load_config
from ssdd.distill.config import DistillConfig
from ssdd.distill.run import run_distill
from ssdd.evaluation.config import EvaluateConfig
from ssdd.run import progress, tblog
from ssdd.teacher.config import TeacherConfig
from ssdd.teacher.train import train_teacher

DISTILL = ["data.resolution=16", "budget=10", "outer.steps=12", "outer.batch_size=16", "pool.size=2",
           "pool.max_steps=5", "outer.model.width=4", "outer.model.depth=2", "device=cpu", "log_every=3",
           "checkpoint_every=4"]
TEACHER = ["model.name=convnet", "model.width=4", "model.depth=2", "model.feature=pool", "projector=[16,16]",
           "optim.batch_size=16", "optim.epochs=2", "optim.warmup_epochs=1", "probe.iterations=20",
           "data.resolution=16", "device=cpu"]


pytestmark = pytest.mark.usefixtures("one_thread")


def distill_config(npz: Path, teacher: Path, out: Path, *extra: str) -> DistillConfig:
    return load_config(DistillConfig, None, [f"data.path={npz}", f"teacher={teacher}", f"out_dir={out}", *DISTILL,
                                             *extra])


class StubWriter:
    """Stands in for SummaryWriter: records every call."""

    instances: ClassVar[list[StubWriter]] = []

    def __init__(self, log_dir: str, purge_step: int | None = None, flush_secs: int = 120) -> None:
        self.log_dir, self.purge_step = log_dir, purge_step
        self.scalars: list[tuple[str, float, int]] = []
        self.texts: list[tuple[str, str, int]] = []
        self.closed = False
        StubWriter.instances.append(self)

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars.append((tag, value, step))

    def add_text(self, tag: str, text: str, step: int) -> None:
        self.texts.append((tag, text, step))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def stub_writer(monkeypatch):
    StubWriter.instances = []
    monkeypatch.setattr(tblog, "writer_class", lambda: StubWriter)
    return StubWriter


def read_events(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


# ----------------------------------------------------------------------------- phases
def test_phase_is_silent_unless_shown(capsys):
    with progress.phase("nothing to see"):
        pass
    with progress.show_phases(False), progress.phase("still nothing"):
        pass
    assert capsys.readouterr().out == ""


def test_phase_prints_a_timed_line_and_announces_outer_phases_first(capsys):
    with progress.show_phases(True):
        with progress.phase("outer") as outer:
            with progress.phase("inner") as inner:
                inner.detail = "42 things"
            outer.detail = "all"
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "outer ..."
    assert lines[1].startswith("  inner: done in ") and lines[1].endswith(" s (42 things)")
    assert lines[2].startswith("outer: done in ") and lines[2].endswith("(all)")


def test_a_long_phase_announces_itself_and_a_failed_one_prints_no_done_line(capsys, monkeypatch):
    monkeypatch.setattr(progress, "ANNOUNCE_AFTER", 0.02)
    with progress.show_phases(True):
        with progress.phase("slow"):
            time.sleep(0.3)
        with pytest.raises(RuntimeError), progress.phase("broken"):
            raise RuntimeError("boom")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "slow ..." and lines[1].startswith("slow: done in ")
    assert not any(line.startswith("broken:") for line in lines)


def test_bars_are_tqdm_on_a_terminal_and_a_plain_line_every_interval_in_a_file(monkeypatch, capsys):
    """In a file (output redirected) a bar is a plain line every LOG_INTERVAL seconds once it has moved: no
    carriage returns, no blank clears, no copy of the bar beside each phase line (tqdm.write's redraw)."""

    class Terminal:
        def __init__(self, tty: bool) -> None:
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

        def write(self, text: str) -> int:
            return len(text)

        def flush(self) -> None:
            pass

    monkeypatch.setattr(sys, "stderr", Terminal(True))
    with progress.show_phases(True):
        assert isinstance(progress.bar(range(3)), tqdm)
    monkeypatch.setattr(sys, "stderr", Terminal(False))
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    with progress.show_phases(True):
        bar = progress.bar(range(10), desc="teacher epoch 1/2")
        assert isinstance(bar, progress.LogProgress)
        for i in bar:
            if i == 3:
                bar.set_postfix(loss=1.23456, monitor="5.0%")
                with progress.phase("a phase inside"):
                    pass
            clock[0] += 10.0  # a line after 30 s: after items 3, 6 and 9
        quiet = progress.bar(range(3), show=False)
        clock[0] += 100.0
        list(quiet)
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["teacher epoch 1/2: 3/10 (30 %), 0.1 it/s",
                     "a phase inside: done in 0.00 s",
                     "teacher epoch 1/2: 6/10 (60 %), 0.1 it/s, loss=1.235, monitor=5.0%",
                     "teacher epoch 1/2: 9/10 (90 %), 0.1 it/s, loss=1.235, monitor=5.0%"]
    fast = progress.LogProgress(total=50_000, desc="features", unit="img")
    fast.n = 12_340
    assert fast.line(fast.started + 10.0) == "features: 12,340/50,000 (25 %), 1,234 img/s"  # not 1.23e+03


def test_duration_format():
    assert progress.duration(0.012) == "0.01 s"
    assert progress.duration(12.34) == "12.3 s"
    assert progress.duration(123) == "2 min 03 s"
    assert progress.duration(3720) == "1 h 02 min"


def test_a_tiny_distill_run_prints_its_phases(tiny_npz, tiny_teacher, tmp_path, capsys):
    run_distill(distill_config(tiny_npz, tiny_teacher, tmp_path / "boost", "method=boost", "budget=3",
                               "boost.image_bases=8", "boost.image_resolution=8", "boost.target_bases=4",
                               "boost.approx_steps=20", "boost.selection=kmeans"), show_progress=True)
    out = capsys.readouterr().out
    for start in ("loading ", "teacher features of the 64 source images", "k-means: ", "PCA (randomized): 8 components",
                  "PCA (randomized): 4 components of 64 teacher features", "pool warm start: 2 models",
                  "fitting 3 approximation network(s)"):
        assert any(line.startswith(start) and ": done in " in line for line in out.splitlines()), start
    run_distill(distill_config(tiny_npz, tiny_teacher, tmp_path / "quiet", "method=random"), show_progress=False)
    assert "done in" not in capsys.readouterr().out


# ----------------------------------------------------------------------------- TensorBoard
def test_missing_package_fails_in_one_line_before_any_work(tiny_npz, tiny_teacher, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    with pytest.raises(tblog.MissingPackageError, match="ssdd\\[tensorboard\\]"):
        tblog.ScalarLog(True)
    tblog.ScalarLog(False).open(tmp_path / "off").scalars({"a": 1.0}, 0)  # disabled: never imports anything
    out = tmp_path / "run"
    for command, config in (("distill", [f"data.path={tiny_npz}", f"teacher={tiny_teacher}", *DISTILL]),
                            ("teacher", [f"data.path={tiny_npz}", *TEACHER])):
        code = main([command, "--no-progress", f"out_dir={out}", "tensorboard=true", *config])
        err = capsys.readouterr().err
        assert code == 2
        assert err == (f'ssdd {command}: error: tensorboard=true needs the tensorboard package: '
                       f'pip install "ssdd[tensorboard]"\n')
        assert not out.exists()


def test_distill_sends_every_log_line_and_closes(tiny_npz, tiny_teacher, tmp_path, stub_writer):
    run_distill(distill_config(tiny_npz, tiny_teacher, tmp_path / "k", "method=krr_st", "tensorboard=true"),
                show_progress=False)
    (writer,) = stub_writer.instances
    assert writer.log_dir == str(tmp_path / "k" / "tensorboard") and writer.purge_step == 0 and writer.closed
    losses = [(step, value) for tag, value, step in writer.scalars if tag == "distill/loss"]
    assert [step for step, _ in losses] == [3, 6, 9, 12]
    assert {tag for tag, _, _ in writer.scalars} == {"distill/loss", "distill/steps_per_s", "distill/lr",
                                                     "distill/pool_resets"}


def test_nothing_under_tensorboard_when_disabled(tiny_npz, tiny_teacher, tmp_path, stub_writer):
    run_distill(distill_config(tiny_npz, tiny_teacher, tmp_path / "k", "method=krr_st", "outer.steps=3"),
                show_progress=False)
    assert not (tmp_path / "k" / "tensorboard").exists() and not stub_writer.instances


def test_only_rank_zero_writes(tmp_path, stub_writer, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    log = tblog.ScalarLog(True).open(tmp_path)
    log.scalars({"a": 1.0}, 0)
    assert not log.active and not stub_writer.instances and not (tmp_path / "tensorboard").exists()
    assert tblog.ScalarLog(True, is_main=False).open(tmp_path).active is False


def test_scalars_skip_what_is_not_a_number(tmp_path, stub_writer):
    with tblog.ScalarLog(True).open(tmp_path, purge_step=5) as log:
        log.scalars({"x": 1, "y": 2.5, "none": None, "flag": True, "text": "a", "nan": float("nan")}, 7, prefix="p/")
    (writer,) = stub_writer.instances
    assert writer.scalars == [("p/x", 1.0, 7), ("p/y", 2.5, 7)] and writer.purge_step == 5 and writer.closed


def test_real_event_files_of_distill_resume_and_teacher(tiny_npz, tiny_teacher, tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "boost"
    boost = ["method=boost", "budget=3", "boost.image_bases=8", "boost.image_resolution=8", "boost.target_bases=4",
             "boost.approx_steps=20", "tensorboard=true"]
    assert run_distill(distill_config(tiny_npz, tiny_teacher, out, *boost, "stop_after_steps=5"),
                       show_progress=False) is None
    run_distill(distill_config(tiny_npz, tiny_teacher, out, *boost), resume=True, show_progress=False)
    scalars = read_events(out / "tensorboard")
    # a pause (step 5) logs no row: the resumed log equals an uninterrupted one
    assert [step for step, _ in scalars["distill/loss"]] == [3, 6, 9, 12]
    for view in ("rot90", "rot180", "rot270"):
        ((step, error),) = scalars[f"approximation/{view}/relative_error"]
        assert step == 12 and error >= 0
        assert f"approximation/{view}/relative_error_without_network" in scalars

    teacher_out = tmp_path / "teacher_run"  # tmp_path / "teacher" holds the tiny_teacher fixture
    train_teacher(load_config(TeacherConfig, None, [f"data.path={tiny_npz}", f"out_dir={teacher_out}", *TEACHER,
                                                    "tensorboard=true", "tensorboard_every=2"]), show_progress=False)
    scalars = read_events(teacher_out / "tensorboard")
    steps_per_epoch = 64 // 16
    for tag in ("teacher/loss", "teacher/monitor_top1", "teacher/lr", "teacher/images_per_s"):
        assert [step for step, _ in scalars[tag]] == [steps_per_epoch, 2 * steps_per_epoch], tag
    assert [step for step, _ in scalars["teacher/step/loss"]] == [2, 4, 6, 8]
    assert [step for step, _ in scalars["teacher/linear_probe_top1"]] == [2 * steps_per_epoch]
    assert torch.isfinite(torch.tensor([v for _, v in scalars["teacher/loss"]])).all()


def test_evaluate_writes_top1_per_row_and_a_summary_table(tiny_npz, tiny_teacher, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_distill(distill_config(tiny_npz, tiny_teacher, tmp_path / "r", "method=random"), show_progress=False)
    out = tmp_path / "eval"
    code = main(["evaluate", "--no-progress", "-d", str(tmp_path / "r"), "--", f"teacher={tiny_teacher}",
                 f"out_dir={out}", f"source.path={tiny_npz}", "seeds=2", "models=[{name: convnet, width: 4, depth: 2}]",
                 f"targets=[{{source: npz, path: {tiny_npz}, name: tiny}}]", "pretrain.epochs=1",
                 "full_data.enabled=false", "full_data.same_recipe=false", "finetune.small_iterations=2",
                 "probe.iterations=3", "cka_images=16",
                 "device=cpu", "tensorboard=true"])
    assert code == 0
    scalars = read_events(out / "tensorboard")
    for label in ("random@10", "no_pretrain"):
        for mode in ("finetune", "linear_probe"):
            points = scalars[f"top1/tiny/{mode}/convnet-w4-d2/{label}"]
            assert [step for step, _ in points] == [0, 1] and all(0 <= v <= 100 for _, v in points)
        assert [step for step, _ in scalars[f"cka_to_teacher/convnet-w4-d2/{label}"]] == [0, 1]
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    texts = events.Tensors("summary/text_summary")
    assert [t.step for t in texts] == [1, 2, 3, 4]
    assert "random@10" in texts[-1].tensor_proto.string_val[0].decode()


def test_a_study_checks_the_package_before_its_first_stage_and_keeps_its_cache_keys(tmp_path, monkeypatch):
    from ssdd.study import StudyConfig, run_study
    from ssdd.study.runner import stage_key as _key

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    study = load_config(StudyConfig, None, [
        f"out_dir={tmp_path / 'study'}", "teacher.config=demo_teacher",
        "distill=[{config: demo_distill, overrides: [tensorboard=true]}]", "report=false"])
    with pytest.raises(tblog.MissingPackageError):
        run_study(study, show_progress=False)
    assert not (tmp_path / "study" / "teacher").exists()
    for kind, schema, extra in (("teacher", TeacherConfig, ["tensorboard_every=5"]), ("distill", DistillConfig, []),
                                ("evaluate", EvaluateConfig, [])):
        plain = _key(kind, load_config(schema, None, []), [])
        assert _key(kind, load_config(schema, None, ["tensorboard=true", *extra]), []) == plain
