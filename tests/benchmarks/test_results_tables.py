"""benchmarks/results_tables.py: the generated tables of README.md and docs/results.md match benchmarks/results."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "results_tables.py"
spec = importlib.util.spec_from_file_location("results_tables", SCRIPT)
results_tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(results_tables)


def copy_docs(tmp_path: Path) -> Path:
    """README.md and docs/results.md under tmp_path, where a test may edit them."""
    for name in results_tables.GENERATORS:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def edit_region(path: Path, region: str, old: str, new: str) -> None:
    """Replace the first `old` inside one marked region of `path` (generated or checked)."""
    text = path.read_text()
    start = text.index(f"<!-- {region} -->")
    at = text.index(old, start)
    path.write_text(text[:at] + new + text[at + len(old):])


def test_every_generated_table_and_quoted_number_matches_the_results():
    assert results_tables.drift() == [], "run: python benchmarks/results_tables.py"


def test_an_edited_number_in_a_generated_table_is_drift(tmp_path):
    root = copy_docs(tmp_path)
    assert results_tables.drift(root) == []
    edit_region(root / "README.md", "generated:headline", "57.59", "57.60")
    edit_region(root / "docs/results.md", "generated:budget-flowers102-probe", "30.96", "31.96")
    assert results_tables.drift(root) == ["README.md: headline", "docs/results.md: budget-flowers102-probe"]


def test_a_quoted_number_that_no_table_or_recomputation_backs_is_drift(tmp_path):
    root = copy_docs(tmp_path)
    edit_region(root / "README.md", "checked:meaning", "4.7", "4.9")
    assert results_tables.drift(root) == ["README.md: checked meaning quotes 4.9"]


def test_a_region_without_a_generator_or_a_generator_without_a_region_is_refused():
    with pytest.raises(ValueError, match="markers without a generator: \\['nope'\\]"):
        results_tables.render("<!-- generated:nope -->\n<!-- /generated:nope -->\n", {})
    with pytest.raises(ValueError, match="regions without a marker: \\['headline'\\]"):
        results_tables.render("no markers", {"headline": lambda: ""})
