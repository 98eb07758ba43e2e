from pathlib import Path

import pytest

from ssdd.run.folder import check_resume_compatible, config_hash


def test_a_setting_at_its_legacy_value_leaves_the_hash_of_an_older_config_unchanged():
    old = {"a": 1, "group": {"b": "x"}}
    new = {"a": 1, "group": {"b": "x", "added": False}}
    legacy = {"group.added": False}
    assert config_hash(new, legacy=legacy) == config_hash(old, legacy=legacy) == config_hash(old)
    changed = {"a": 1, "group": {"b": "x", "added": True}}
    assert config_hash(changed, legacy=legacy) != config_hash(old)
    assert config_hash(new) != config_hash(old)  # without the table the new key counts


def test_resume_accepts_a_saved_config_without_a_later_setting_only_at_its_legacy_value():
    saved = {"a": 1}
    check_resume_compatible(saved, {"a": 1, "added": False}, legacy={"added": False})
    with pytest.raises(ValueError, match="added"):
        check_resume_compatible(saved, {"a": 1, "added": True}, legacy={"added": False})
    with pytest.raises(ValueError, match="added"):
        check_resume_compatible(saved, {"a": 1, "added": False})


def test_a_resume_may_name_the_same_device_as_auto(monkeypatch):
    """A run on `cpu` resumed with `device=auto` (the default) on a machine without a GPU is the same run; on a
    machine with one, `auto` is cuda, another device, and refused."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    check_resume_compatible({"device": "cpu", "a": 1}, {"device": "auto", "a": 1})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(ValueError, match=r"device: 'cpu' -> 'cuda'"):
        check_resume_compatible({"device": "cpu", "a": 1}, {"device": "auto", "a": 1})


def test_run_kind_reads_what_each_command_writes_and_claim_refuses_other_kinds(tmp_path):
    import json

    from ssdd.config import load_config, save_config
    from ssdd.distill.config import DistillConfig
    from ssdd.evaluation.config import EvaluateConfig
    from ssdd.experts.config import ExpertsConfig
    from ssdd.run.folder import claim, run_kind
    from ssdd.teacher.config import TeacherConfig

    assert run_kind(tmp_path / "absent") is None and run_kind(tmp_path) is None
    for kind, schema in (("teacher", TeacherConfig), ("distill", DistillConfig), ("experts", ExpertsConfig),
                         ("evaluate", EvaluateConfig)):
        folder = tmp_path / kind
        folder.mkdir()
        save_config(load_config(schema, None, []), folder / "config.yaml")  # a run stopped before its checkpoint
        assert run_kind(folder) == kind
        assert claim(folder, kind) == folder
        other = "teacher" if kind != "teacher" else "distill"
        with pytest.raises(FileExistsError, match="choose another out_dir"):
            claim(folder, other, resume=True)
    for kind, marker in (("ssdd.teacher", "teacher artifact"), ("ssdd.distilled", "distill"),
                         ("ssdd.experts", "experts"), ("something else", "artifact")):
        folder = tmp_path / kind
        folder.mkdir()
        (folder / "manifest.json").write_text(json.dumps({"kind": kind}))
        assert run_kind(folder) == marker
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text("{not json")
    assert run_kind(tmp_path / "broken") == "artifact"
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "study.json").write_text("{}")
    assert run_kind(tmp_path / "study") == "study"
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "inputs.json").write_text(json.dumps({"teacher": "a", "teacher_function": "b",
                                                                  "source": "c"}))
    assert run_kind(tmp_path / "inputs") == "distill"
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        claim(tmp_path / "inputs", "distill", resume=True)
    (tmp_path / "inputs" / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(FileExistsError, match="pass --resume"):
        claim(tmp_path / "inputs", "distill")


def test_claim_output_refuses_a_run_s_folder_unless_it_is_its_own_and_any_folder_inside_an_artifact(tmp_path):
    import json

    from ssdd.run.folder import claim_output

    artifact = tmp_path / "set"
    artifact.mkdir()
    (artifact / "manifest.json").write_text(json.dumps({"kind": "ssdd.distilled"}))
    evaluation = tmp_path / "eval"
    evaluation.mkdir()
    (evaluation / "results.json").write_text("[]")
    assert claim_output(tmp_path / "new") == tmp_path / "new"  # absent or holding no run: fine
    assert claim_output(evaluation, own=[tmp_path / "." / "eval"]) == evaluation  # its own run's folder
    for out, said in ((artifact, "holds a distilled set"), (artifact / "pictures" / "x", "is inside a distilled set"),
                      (evaluation, "holds an evaluation")):
        with pytest.raises(FileExistsError, match=said):
            claim_output(out, own=[artifact / "pictures"])


def test_a_finished_run_without_a_checkpoint_is_not_offered_resume(tmp_path):
    """A finished random set (manifest, no checkpoint.pt): --resume would find nothing, so the refusal of a fresh
    run does not suggest it; with a checkpoint it does."""
    import json

    from ssdd.run.folder import claim

    folder = tmp_path / "random"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"kind": "ssdd.distilled"}))
    with pytest.raises(FileExistsError) as info:
        claim(folder, "distill")
    assert str(info.value) == (f"{folder} already holds a distilled set or distillation run (manifest.json, with no "
                               f"checkpoint to continue from); choose another out_dir")
    (folder / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(FileExistsError, match=r"\(checkpoint.pt\); pass --resume to continue it or choose another"):
        claim(folder, "distill")


_HOLD = """
import sys, time
from ssdd.run.folder import exclusive
with exclusive(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_one_run_at_a_time_holds_a_folder(tmp_path, monkeypatch):
    """Two runs in one out_dir would interleave their logs and overwrite each other's files: while one process
    holds the folder, another is refused in one line; the lock goes with the process, however it ends."""
    import os
    import subprocess
    import sys

    import pytest

    from ssdd.run.folder import exclusive
    from ssdd.run.launched import LOCKED_BY_PARENT

    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FileExistsError, match=rf"^{out} is in use by another ssdd run that has not ended \(it "
                                                   rf"holds a lock on the folder\); wait for it to end, or choose "
                                                   rf"another out_dir$"):
            with exclusive(out):
                pass
        monkeypatch.setenv("RANK", "1")  # torchrun's other ranks: rank 0 holds the folder for the job
        with exclusive(out):
            pass
        monkeypatch.setenv("RANK", "0")
        monkeypatch.setenv(LOCKED_BY_PARENT, str(out.resolve()))  # a process its launcher holds the folder for
        with exclusive(out):
            pass
        monkeypatch.delenv(LOCKED_BY_PARENT)
    finally:
        holder.kill()
        holder.wait()
    with exclusive(out), exclusive(out):  # free again; nested runs of one process share the hold
        (out / "file").write_text("x")
    fresh = tmp_path / "refused"
    with pytest.raises(ValueError), exclusive(fresh):
        raise ValueError("a run refused before its first file")
    assert not fresh.exists()  # the folder it made is gone again; a folder with files stays
    assert (out / "file").is_file()


def test_processes_started_with_the_held_descriptor_keep_the_folder_held(tmp_path):
    """`ssdd evaluate --processes` hands its lock to its processes: killed, the launcher leaves them holding the
    folder, so a --resume is not let in beside processes still writing."""
    import subprocess
    import sys

    import pytest

    from ssdd.run.folder import exclusive, held_descriptor

    out = tmp_path / "run"
    with exclusive(out):
        (out / "config.yaml").write_text("x")
        worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                  pass_fds=(held_descriptor(out),))
    assert held_descriptor(out) is None  # this process let go
    try:
        with pytest.raises(FileExistsError, match="is in use by another ssdd run"), exclusive(out):
            pass
    finally:
        worker.kill()
        worker.wait()
    with exclusive(out):  # the last holder gone: free
        pass


def test_a_repository_or_root_folder_is_no_out_dir(tmp_path):
    from ssdd.config import ConfigError
    from ssdd.run.folder import check_writable

    (tmp_path / "repo" / ".git").mkdir(parents=True)
    for folder in (tmp_path / "repo", Path("/")):
        with pytest.raises(ConfigError, match="a root, home or repository folder"):
            check_writable(folder)
    check_writable(tmp_path / "repo" / "runs" / "x")  # a folder of its own inside it is fine


def test_a_file_where_an_output_folder_goes_is_one_line_before_any_work(tmp_path):
    from ssdd.run.folder import claim

    (tmp_path / "afile").write_text("")
    with pytest.raises(FileExistsError, match=r"--out=.*afile: a file, not a folder; choose another --out"):
        claim(tmp_path / "afile", "teacher", key="--out")
