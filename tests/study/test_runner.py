"""`ssdd reproduce`: stage caching by key, exactly the downstream stages rerun, pause and continue."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import make_npz
from ssdd.cli import main
from ssdd.config import load_config
from ssdd.study import StudyConfig, run_study

pytestmark = pytest.mark.slow


@pytest.fixture
def study_files(tmp_path: Path, one_thread) -> Path:
    data = make_npz(tmp_path / "tiny.npz")
    common = {"device": "cpu", "data": {"source": "npz", "path": str(data), "resolution": 16}}
    (tmp_path / "teacher.yaml").write_text(yaml.safe_dump({
        **common, "model": {"name": "convnet", "width": 4, "depth": 2, "feature": "pool"}, "projector": [16, 16],
        "optim": {"epochs": 1, "batch_size": 16, "warmup_epochs": 0}, "probe": {"iterations": 3}}))
    (tmp_path / "distill.yaml").write_text(yaml.safe_dump({
        **common, "method": "krr_st", "budget": 10, "log_every": 2, "checkpoint_every": 2,
        "krr": {"steps": 4, "batch_size": 16, "model": {"name": "convnet", "width": 4, "depth": 2}},
        "pool": {"size": 2, "max_steps": 5}}))
    (tmp_path / "evaluate.yaml").write_text(yaml.safe_dump({
        "device": "cpu", "seeds": 1, "source": {"source": "npz", "path": str(data), "resolution": 16},
        "models": [{"name": "convnet", "width": 4, "depth": 2}],
        "targets": [{"source": "npz", "path": str(data), "name": "tiny"}], "modes": ["linear_probe"],
        "pretrain": {"epochs": 2}, "full_data": {"epochs": 1, "batch_size": 16}, "probe": {"iterations": 3},
        "cka_images": 16}))
    return tmp_path


def study(root: Path, *overrides: str) -> StudyConfig:
    return load_config(StudyConfig, None, [
        f"out_dir={root / 'study'}", f"teacher.config={root / 'teacher.yaml'}",
        f"distill=[{{config: {root / 'distill.yaml'}}}, "
        f"{{config: {root / 'distill.yaml'}, overrides: [method=random]}}]",
        f"evaluate.config={root / 'evaluate.yaml'}", "report=false", *overrides])


def statuses(result) -> dict[str, str]:
    return {f"{s.kind}/{s.name}": s.status for s in result.stages}


def test_cache_reruns_exactly_the_stages_downstream_of_a_change(study_files, capsys):
    first = run_study(study(study_files), show_progress=False)
    assert first.finished and set(statuses(first).values()) == {"ran"}
    assert set(statuses(first)) == {"teacher/teacher", "distill/krr_st_n10", "distill/random_n10", "evaluate/evaluate"}
    again = run_study(study(study_files), show_progress=False)
    assert set(statuses(again).values()) == {"cached"}
    assert [s.folder for s in again.stages] == [s.folder for s in first.stages]
    # a cached stage keeps the time it took in the run that finished it (study.json), and the same study in the
    # same out_dir replaces nothing of another's
    assert [s.finished_in_seconds for s in again.stages] == [s.seconds for s in first.stages]
    assert "of a study with another config" not in capsys.readouterr().out

    # an evaluation setting: only the evaluation reruns
    changed = run_study(study(study_files, "evaluate.overrides=[probe.iterations=4]"), show_progress=False)
    assert f"{study_files / 'study'} holds the study.yaml, study.json and report of a study with another config" \
        in capsys.readouterr().out
    assert statuses(changed) == {"teacher/teacher": "cached", "distill/krr_st_n10": "cached",
                                 "distill/random_n10": "cached", "evaluate/evaluate": "ran"}
    # one distilled set's setting: that set and the evaluation
    distill = study_files / "distill.yaml"
    changed = run_study(study(study_files, f"distill=[{{config: {distill}, overrides: [outer.steps=3]}}, "
                                           f"{{config: {distill}, overrides: [method=random]}}]"), show_progress=False)
    assert statuses(changed) == {"teacher/teacher": "cached", "distill/krr_st_n10": "ran",
                                 "distill/random_n10": "cached", "evaluate/evaluate": "ran"}
    # the teacher: everything
    changed = run_study(study(study_files, "teacher.overrides=[probe.iterations=4]"), show_progress=False)
    assert set(statuses(changed).values()) == {"ran"}
    # nothing was overwritten: every variant has its own folder
    assert len(list((study_files / "study" / "evaluate").iterdir())) == 4
    # settings that do not change results (logging, pauses) keep the cache
    same = run_study(study(study_files, "distill=[{config: " + str(distill) + ", overrides: [log_every=1]}, "
                           "{config: " + str(distill) + ", overrides: [method=random]}]"), show_progress=False)
    assert set(statuses(same).values()) == {"cached"}


def test_dry_run_runs_nothing_and_names_what_would_run(study_files, capsys):
    planned = run_study(study(study_files), show_progress=False, dry_run=True)
    assert set(statuses(planned).values()) == {"would run"} and not (study_files / "study").exists()
    run_study(study(study_files), show_progress=False)
    changed = run_study(study(study_files, "evaluate.overrides=[probe.iterations=4]"), show_progress=False,
                        dry_run=True)
    assert statuses(changed)["evaluate/evaluate"] == "would run" and statuses(changed)["teacher/teacher"] == "cached"


def test_under_torchrun_a_study_only_plans(study_files, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # benchmarks/study_cells.py plans its cells this way on every rank
    assert set(statuses(run_study(study(study_files), show_progress=False, dry_run=True)).values()) == {"would run"}
    with pytest.raises(ValueError, match="runs in one process"):
        run_study(study(study_files), show_progress=False)
    assert not (study_files / "study").exists()


def test_a_paused_stage_continues_from_its_checkpoint(study_files):
    distill = study_files / "distill.yaml"
    paused = run_study(study(study_files, f"distill=[{{config: {distill}, overrides: [stop_after_steps=2]}}]"),
                       show_progress=False)
    assert not paused.finished and statuses(paused)["distill/krr_st_n10"] == "paused"
    assert "evaluate/evaluate" not in statuses(paused)
    resumed = run_study(study(study_files, f"distill=[{{config: {distill}}}]"), show_progress=False)
    assert resumed.finished
    assert statuses(resumed) == {"teacher/teacher": "cached", "distill/krr_st_n10": "resumed",
                                 "evaluate/evaluate": "ran"}


def test_a_moved_study_resumes_its_paused_stage(study_files, capsys):
    import shutil

    distill = study_files / "distill.yaml"
    paused = run_study(study(study_files, f"distill=[{{config: {distill}, overrides: [stop_after_steps=2]}}]"),
                       show_progress=False)
    assert statuses(paused)["distill/krr_st_n10"] == "paused"
    shutil.move(study_files / "study", study_files / "moved")  # its teacher moves with it
    code = main(["reproduce", "--no-progress", f"out_dir={study_files / 'moved'}",
                 f"teacher.config={study_files / 'teacher.yaml'}", f"distill=[{{config: {distill}}}]",
                 f"evaluate.config={study_files / 'evaluate.yaml'}", "report=false"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "teacher teacher: cached" in out and "distill krr_st_n10: resuming" in out


def test_existing_teacher_and_cli(study_files, capsys):
    first = run_study(study(study_files), show_progress=False)
    teacher = first.teacher
    code = main(["reproduce", "--no-progress", f"out_dir={study_files / 'other'}", f"teacher.path={teacher}",
                 f"distill=[{{config: {study_files / 'distill.yaml'}, overrides: [method=random]}}]",
                 f"evaluate.config={study_files / 'evaluate.yaml'}"])
    out = capsys.readouterr().out
    assert code == 0 and "teacher: given" in out and "report:" in out
    assert (study_files / "other" / "report.html").is_file() and (study_files / "other" / "study.json").is_file()
    assert main(["reproduce", f"out_dir={study_files / 'x'}", "distill=[]"]) == 2
    assert "needs at least one" in capsys.readouterr().err
    assert main(["reproduce", f"out_dir={study_files / 'y'}", f"evaluate.config={study_files / 'evaluate.yaml'}"]) == 2
    assert "the study has no teacher" in capsys.readouterr().err


def test_the_report_reads_the_sets_the_evaluate_preset_names(study_files):
    first = run_study(study(study_files), show_progress=False)
    given = next(p for p in first.distilled if p.name.startswith("random"))
    result = run_study(study(study_files, "report=true", f"distill=[{{config: {study_files / 'distill.yaml'}}}]",
                             f"evaluate.overrides=['distilled=[{given}]']"), show_progress=False)
    assert result.finished and statuses(result)["evaluate/evaluate"] == "ran"
    report = (study_files / "study" / "report.md").read_text()
    assert "random@10" in report and "krr_st@10" in report
    assert "no distilled folder read" not in report


def test_a_second_study_in_the_same_out_dir_is_refused_while_the_first_runs(study_files):
    fcntl = pytest.importorskip("fcntl")
    root = study_files / "study"
    root.mkdir()
    with open(root / ".study.lock", "a") as held:  # what a running `ssdd reproduce` holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(FileExistsError, match="in use by another `ssdd reproduce`"):
            run_study(study(study_files), show_progress=False)
        assert not (root / "teacher").exists()
        assert run_study(study(study_files), show_progress=False, dry_run=True).stages  # a dry run reads only
    assert run_study(study(study_files), show_progress=False).finished  # released: the study runs


def test_new_content_in_a_data_file_reruns_the_stages_that_read_it(study_files):
    first = run_study(study(study_files), show_progress=False)
    assert set(statuses(first).values()) == {"ran"}
    make_npz(study_files / "tiny.npz", seed=7)  # same path, other images
    again = run_study(study(study_files), show_progress=False, dry_run=True)
    assert set(statuses(again).values()) == {"would run"}


def test_named_studies_share_out_dir_stages_and_keep_their_own_files(study_files, capsys, monkeypatch):
    import json

    from ssdd.evaluation.config import EvaluateConfig
    from ssdd.study.runner import stage_key as _key

    first = run_study(study(study_files, "name=one", "report=true"), show_progress=False)
    second = run_study(study(study_files, "name=two", "report=true",
                             f"distill=[{{config: {study_files / 'distill.yaml'}, overrides: [method=random]}}]"),
                       show_progress=False)
    assert first.finished and second.finished
    assert statuses(second)["teacher/teacher"] == "cached" and statuses(second)["distill/random_n10"] == "cached"
    # the second evaluation took every cell the first had measured (all of its own: random@10 and the references)
    assert statuses(second)["evaluate/evaluate"] == "ran" and second.evaluation != first.evaluation
    assert f"reused: 4 finished cells from {first.evaluation}" in capsys.readouterr().out
    rows = json.loads((second.evaluation / "results.json").read_text())
    assert len(rows) == 4 and {r["reused_from"] for r in rows} == {str(first.evaluation)}
    assert {r["label"] for r in rows} == {"random@10", "no_pretrain", "full_data", "full_data_same_recipe"}
    # its key is the one it has without reuse
    stage = json.loads((second.evaluation / "stage.json").read_text())
    cfg = load_config(EvaluateConfig, str(second.evaluation / "config.yaml"), [])
    assert cfg.reuse == [str(first.evaluation)] and _key("evaluate", cfg, stage["upstream"]) == stage["key"]
    cfg.reuse = []
    assert _key("evaluate", cfg, stage["upstream"]) == stage["key"]
    root = study_files / "study"
    for name in ("one", "two"):
        assert (root / name / "study.yaml").is_file() and (root / name / "report.md").is_file()
    assert not (root / "study.yaml").exists() and not (root / "report.md").exists()
    assert "krr_st@10" in (root / "one" / "report.md").read_text()
    assert "krr_st@10" not in (root / "two" / "report.md").read_text()
    # `ssdd report` of a study's folder reports its evaluation into it, from any working folder
    (root / "one" / "report.md").unlink()
    elsewhere = study_files / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["report", str(root / "one")]) == 0
    out = capsys.readouterr().out
    assert f"is a study's folder: the report of its evaluation, {first.evaluation}" in out
    assert "krr_st@10" in (root / "one" / "report.md").read_text()
    assert main(["report", str(root / "nowhere")]) == 2
    assert "nowhere: no such folder (pass an `ssdd evaluate` out_dir" in capsys.readouterr().err
    with pytest.raises(ValueError, match="stage folder"):
        run_study(study(study_files, "name=distill"), show_progress=False)


def test_cells_measured_beside_the_study_with_its_evaluation_settings_are_all_reused(study_files, capsys):
    import json

    from ssdd.evaluation.protocol import run_evaluate
    from ssdd.study.runner import other_evaluations, study_evaluation_config

    sets_only = run_study(study(study_files, "evaluate.config="), show_progress=False)  # teacher and sets only
    assert sets_only.finished and sets_only.evaluation is None and len(sets_only.distilled) == 2
    whole = study(study_files)
    root = study_files / "study"
    cfg = study_evaluation_config(whole, sets_only.teacher, sets_only.distilled)
    cfg.out_dir = str(root / "evaluate" / "part")
    assert other_evaluations(root, Path(cfg.out_dir)) == []
    measured = run_evaluate(cfg, show_progress=False)
    assert len({r["label"] for r in measured}) == 5  # krr_st@10, random@10 and the three reference rows
    capsys.readouterr()
    result = run_study(whole, show_progress=False)
    assert result.finished and statuses(result)["evaluate/evaluate"] == "ran"
    assert f"reused: 5 finished cells from {root / 'evaluate' / 'part'}" in capsys.readouterr().out
    rows = json.loads((result.evaluation / "results.json").read_text())
    assert len(rows) == len(measured) and all("reused_from" in r for r in rows)
    assert other_evaluations(root, result.evaluation) == [str(root / "evaluate" / "part")]


def test_a_digits_stage_key_ignores_a_file_at_the_unused_default_data_path(tmp_path, monkeypatch):
    from ssdd.config import load_config
    from ssdd.study.runner import stage_key
    from ssdd.teacher.config import TeacherConfig

    monkeypatch.chdir(tmp_path)
    cfg = load_config(TeacherConfig, "demo_teacher")
    assert cfg.data.source == "digits" and cfg.data.path == "data/cifar100.npz"
    before = stage_key("teacher", cfg, [])
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "cifar100.npz").write_bytes(b"not read by a digits source")
    assert stage_key("teacher", cfg, []) == before
    npz = load_config(TeacherConfig, "demo_teacher", ["data.source=npz"])
    assert stage_key("teacher", npz, []) != stage_key("teacher", npz, ["x"])  # npz paths still count (below)
    other = stage_key("teacher", npz, [])
    (tmp_path / "data" / "cifar100.npz").write_bytes(b"other contents")
    assert stage_key("teacher", npz, []) != other


@pytest.mark.parametrize(("left", "resumes"), [("cells/0123.pretrain.pt", True), ("cells/0123.json", True),
                                              ("cells/.0123.json.tmp", False), (None, False)])
def test_an_evaluation_stage_cut_before_its_results_resumes_from_what_it_saved(tmp_path, left, resumes):
    """A stage's evaluation cut inside its first cell has no results.json yet; the cells or the pre-training state
    it saved are resumed (the folder is kept), a killed write's temporary file alone is not."""
    from ssdd.evaluation.config import EvaluateConfig
    from ssdd.study.runner import _run_stage, stage_key

    cfg = load_config(EvaluateConfig, "evaluate_cpu", [])
    folder = tmp_path / "evaluate" / f"evaluate-{stage_key('evaluate', cfg, [])[:8]}"
    if left is not None:
        (folder / left).parent.mkdir(parents=True)
        (folder / left).write_text("x")
    seen = []
    _run_stage("evaluate", "evaluate", cfg, [], tmp_path, lambda c, resume: seen.append(resume) or True, print)
    assert seen == [resumes]
    if left is not None:  # kept to resume from, or removed with the folder of a fresh start
        assert (folder / left).exists() == resumes


@pytest.mark.parametrize("name", ["", "one"])
def test_a_studys_folder_names_its_own_evaluation_from_any_working_folder(name, tmp_path, monkeypatch):
    """study.json spells the evaluation folder as the study's command did (relative to where it ran): `ssdd
    report` of the study's folder finds it under that folder's out_dir from anywhere, and a copy of the study
    finds its own copy, not the original (a named study's folder is OUT/<name>)."""
    import json
    import shutil

    from ssdd.study.runner import study_evaluation

    out = tmp_path / "runs" / "x"
    (out / "evaluate" / "evaluate-abc").mkdir(parents=True)
    summary = out / name
    summary.mkdir(exist_ok=True)
    (summary / "study.json").write_text(json.dumps({"evaluation": "runs/x/evaluate/evaluate-abc"}))
    monkeypatch.chdir(tmp_path / "runs")  # not where the study ran
    assert study_evaluation(summary) == out / "evaluate" / "evaluate-abc"
    shutil.copytree(out, tmp_path / "backup" / "x")
    monkeypatch.chdir(tmp_path)  # where the study ran: its spelling names the original
    copy = tmp_path / "backup" / "x"
    assert study_evaluation(copy / name) == copy / "evaluate" / "evaluate-abc"
    (summary / "study.json").write_text(json.dumps({"evaluation": None}))  # a study that has not evaluated yet
    assert study_evaluation(summary) is None and study_evaluation(tmp_path / "none") is None


def test_a_distill_stage_on_other_data_than_the_evaluations_source_is_refused_before_any_stage(study_files):
    import shutil

    from ssdd.study.validate import validate_study

    other = make_npz(study_files / "other.npz", seed=1)
    with pytest.raises(ValueError, match=r"^distill stage random@10: it reads .*other\.npz \[train\], the evaluate "
                                         r"stage's source is .*tiny\.npz \[train\]"):
        validate_study(study(study_files, f"distill[1].overrides=[method=random, data.path={other}]"))
    copy = shutil.copy(study_files / "tiny.npz", study_files / "copy.npz")  # the same images in another file
    validate_study(study(study_files, f"distill[1].overrides=[method=random, data.path={copy}]"))


@pytest.mark.parametrize("override, said", [
    ('distill=[{name: "../../esc", config: x.yaml}]', r"distill\[0\]\.name='\.\./\.\./esc': a set's name is part of"),
    ("distill[1].budgets=[10,10]", "two distill entries make the set random@10"),
    ("distill[1].overrides=[method=mkdt, mkdt.experts=nowhere]", "it reads expert trajectories, and the study has no "
                                                                 "experts stage and mkdt.experts=nowhere is no folder"),
])
def test_a_stage_name_that_leaves_out_dir_or_two_sets_of_one_label_are_refused(study_files, override, said):
    from ssdd.study.validate import validate_study

    with pytest.raises(ValueError, match=said):
        validate_study(study(study_files, override))


def test_a_dry_run_does_not_ask_for_a_writable_out_dir(study_files, monkeypatch):
    from ssdd.config import ConfigError
    from ssdd.study import validate

    def read_only(out_dir, key="out_dir"):
        raise ConfigError(f"{key}={out_dir}: not writable")

    monkeypatch.setattr(validate, "check_writable", read_only)
    validate.validate_study(study(study_files), dry_run=True)
    with pytest.raises(ConfigError, match="not writable"):
        validate.validate_study(study(study_files))
