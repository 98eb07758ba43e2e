"""The cells that processes under torchrun save as soon as each is finished (ssdd.evaluation.schedule): read back
only under their own name and settings, never from a partial file. A round interrupted with several processes,
and its resume, are in tests/evaluation/test_evaluate_torchrun.py."""

from __future__ import annotations

from ssdd.evaluation.schedule import forget_saved_cells, row_cell, save_cell, saved_cells, tidy_saved_cells


def _cell_rows(label: str, seed: int) -> list[dict]:
    """The rows of one cell (two targets), with the fields every result row holds."""
    return [{"label": label, "method": "random", "arch": "convnet", "arch_width": 4, "arch_depth": 2,
             "target": target, "seed": seed, "mode": "linear_probe", "top1": 0.25 + seed, "pretrain_s": 1.5,
             "eval_s": 0.5, "set_fingerprint": "abc"} for target in ("t", "u")]


def test_a_saved_cell_is_read_back_only_under_its_own_name_and_settings(tmp_path, capsys):
    first, second = _cell_rows("random@10", 0), _cell_rows("random@10", 1)
    save_cell(tmp_path, first, "settings-a")
    save_cell(tmp_path, second, "settings-a")
    folder = tmp_path / "cells"
    assert len(list(folder.iterdir())) == 2  # one file per cell, and no temporary file left
    found = saved_cells(tmp_path, "settings-a")
    assert sorted(found.values(), key=lambda rows: rows[0]["seed"]) == [first, second]
    assert {row_cell(rows[0]) for rows in found.values()} == {row_cell(first[0]), row_cell(second[0])}
    assert capsys.readouterr().out == ""
    # measured with other settings: not this evaluation's cell, left where it is
    assert saved_cells(tmp_path, "settings-b") == {}
    assert capsys.readouterr().out.count("not a cell of this evaluation as now configured") == 2
    # a killed writer's temporary file (partial JSON) is never read; a file under another cell's name is not taken
    (folder / ".0123.json.x1y2.tmp").write_text('[{"label": "random@10", "top1"')
    path_of_first = next(path for path, rows in found.items() if rows == first)
    (folder / "copied.json").write_text(path_of_first.read_text())
    assert saved_cells(tmp_path, "settings-a") == found
    assert capsys.readouterr().out.count("not a cell of this evaluation") == 1
    # once results.json holds them their files go; at the end the temporary files too, and the folder when empty
    forget_saved_cells(found)
    tidy_saved_cells(tmp_path)
    assert [p.name for p in folder.iterdir()] == ["copied.json"]
    (folder / "copied.json").unlink()
    tidy_saved_cells(tmp_path)
    assert not folder.exists()
