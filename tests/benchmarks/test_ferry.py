"""benchmarks/gpu/ferry.py: files cut into one part per GPU call and joined, checked, on the machine."""

from __future__ import annotations

import importlib.util
import io
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("ferry", ROOT / "benchmarks" / "gpu" / "ferry.py")
ferry = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ferry)


def test_parts_join_back_to_the_same_files_and_a_lost_part_is_named(tmp_path, capsys):
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "a.bin").write_bytes(bytes(range(256)) * 40)
    (tmp_path / "b.txt").write_text("b\n")
    out = tmp_path / "parts"
    assert ferry.main(["split", str(out), "--part-mb", "0.004", str(source), f"{tmp_path / 'b.txt'}=renamed.txt"]) == 0
    folders = sorted(p.name for p in out.glob("q*"))
    assert len(folders) >= 3 and all(len(list((out / f).iterdir())) == 1 for f in folders)
    assert "src/sub/a.bin" in (out / "CONTENTS").read_text()
    parked = tmp_path / "parked"
    parked.mkdir()
    for part in out.glob("q*/*"):
        (parked / part.name).write_bytes(part.read_bytes())
    names = ferry.join(parked, tmp_path / "dest", out / "SHA256")
    assert "renamed.txt" in names
    assert (tmp_path / "dest" / "src" / "sub" / "a.bin").read_bytes() == bytes(range(256)) * 40
    next(parked.glob("*.02")).unlink()
    assert ferry.main(["join", str(parked), str(tmp_path / "again"), "--sha", str(out / "SHA256")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "incomplete or damaged" in err[0] and "ferry.tar.01, ferry.tar.03" in err[0]


def test_a_member_outside_the_destination_is_refused(tmp_path):
    blob = io.BytesIO()
    with tarfile.open(fileobj=blob, mode="w") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"x\n"))
    ferry.write_parts(blob.getvalue(), tmp_path / "parts", 1.0)
    parked = tmp_path / "parts" / "q1"
    assert ferry.main(["join", str(parked), str(tmp_path / "dest"), "--sha", str(tmp_path / "parts" / "SHA256")]) == 2
    assert not (tmp_path / "escaped.txt").exists()
