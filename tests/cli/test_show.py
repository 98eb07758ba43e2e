"""`ssdd show`: --out is a folder, the default folder is in the current directory, -n must be positive."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssdd.cli import main
from ssdd.config import load_config
from ssdd.distill.config import DistillConfig
from ssdd.distill.run import run_distill

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def random_set(tiny_npz: Path, tiny_teacher: Path, tmp_path: Path) -> Path:
    out = tmp_path / "runs" / "random_n6"
    run_distill(load_config(DistillConfig, None, [f"data.path={tiny_npz}", f"teacher={tiny_teacher}",
                                                  f"out_dir={out}", "method=random", "budget=6", "device=cpu",
                                                  "data.resolution=16"]), show_progress=False)
    return out


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_out_is_a_folder_and_the_default_is_beside_not_inside(random_set, tmp_path, monkeypatch, capsys):
    before = _files(random_set)
    assert main(["show", str(random_set), "--out", str(tmp_path / "pictures" / "random")]) == 0
    assert capsys.readouterr().out.split()[0] == str(tmp_path / "pictures" / "random" / "images.png")
    assert (tmp_path / "pictures" / "random" / "images.png").is_file()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["show", str(random_set), "-n", "2"]) == 0
    assert (work / "show-random_n6" / "images.png").is_file()
    assert _files(random_set) == before  # nothing written into the artifact


@pytest.mark.parametrize("count", ["-3", "0"])
def test_a_count_below_one_is_refused(count, random_set, tmp_path, capsys):
    assert main(["show", str(random_set), "-n", count, "--out", str(tmp_path / "pics")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"ssdd show: error: --images/-n must be at least 1, got {count}"
    assert not (tmp_path / "pics").exists()


def test_out_that_is_a_file_is_refused(random_set, tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    assert main(["show", str(random_set), "--out", str(tmp_path / "taken")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_out_that_holds_a_run_or_lies_inside_an_artifact_is_refused(random_set, tiny_teacher, tmp_path, capsys):
    for out in (random_set, random_set / "pictures", tiny_teacher):  # the set itself, inside it, another run
        before = {folder: _tree(folder) for folder in (random_set, tiny_teacher)}
        assert main(["show", str(random_set), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("ssdd show: error: --out ") and "nothing there was changed" in err and "\n" not in err
        assert {folder: _tree(folder) for folder in (random_set, tiny_teacher)} == before
        assert not (random_set / "pictures").exists()
