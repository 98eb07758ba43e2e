"""`ssdd report DIR`: gather an evaluation folder and its teacher and distilled folders, draw the figures,
write report.md (figures in report_figures/) and a self-contained report.html."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ssdd.artifacts.files import ArtifactError
from ssdd.report import figures as fig
from ssdd.report import html, markdown
from ssdd.report.content import compose, image_key
from ssdd.report.gather import ReportData, gather
from ssdd.run.folder import claim_output, run_kind
from ssdd.run.runtime import atomic_write

FIGURE_DIR = "report_figures"
IMAGES_PER_VIEW = 4  # images drawn for a set with several stored views (one row each)
IMAGES_PLAIN = 16  # images drawn for a plain set (8 per row)


def draw_figures(data: ReportData) -> dict[str, bytes]:
    """Every figure the data allows, by key; a distilled set whose tensors cannot be read gets a note."""
    drawn: dict[str, bytes | None] = {
        "accuracy": fig.accuracy_figure(data), "budget": fig.budget_figure(data),
        "architectures": fig.architecture_figure(data), "loss": fig.loss_figure(data),
        "teacher": fig.teacher_figure(data.teacher.history) if data.teacher.history else None,
    }
    for info in data.distilled:
        if info.path is None:
            continue
        views = len((info.manifest or {}).get("boost", {}).get("views") or [None])
        try:
            drawn[image_key(info)] = fig.images_figure(info.path, IMAGES_PER_VIEW if views > 1 else IMAGES_PLAIN)
        except (ArtifactError, OSError, KeyError, ValueError) as exc:
            data.notes.append(f"{info.label}: images not drawn ({exc})")
    return {key: png for key, png in drawn.items() if png is not None}


def _study_root(study: Path) -> Path:
    """The out_dir of the study whose own files (study.yaml, study.json, the report) are in `study`: the folder
    itself, or its parent for a named study (`name: X` puts them in out_dir/X)."""
    import yaml

    try:
        saved = yaml.safe_load((study / "study.yaml").read_text())
    except (OSError, ValueError, yaml.YAMLError):
        saved = None
    named = saved.get("name") if isinstance(saved, dict) else None
    return study.parent if named and named == study.resolve().name else study


def report_owners(eval_dir: str | Path, out: str | Path) -> list[Path]:
    """The run folders a report of `eval_dir` may be written into: the evaluation folder itself, and the study
    folder `out` when the evaluation is one of its stages (below the study's out_dir), as `ssdd reproduce` does."""
    eval_dir, out = Path(eval_dir), Path(out)
    owners = [eval_dir]
    if run_kind(out) == "study" and eval_dir.resolve().is_relative_to(_study_root(out).resolve()):
        owners.append(out)
    return owners


def build_report(eval_dir: str | Path, out_dir: str | Path | None = None, teacher: str | Path | None = None,
                 distilled: Sequence[str | Path] | None = None) -> tuple[Path, Path]:
    """Write `report.md` (+ `report_figures/*.png`) and `report.html` for an `ssdd evaluate` folder.

    eval_dir: holds results.json (required), config.yaml and summary.json (optional).
    out_dir: where to write (default: eval_dir).
    teacher: the teacher folder (default: the one config.yaml names).
    distilled: the distilled folders (default: those config.yaml names); matched to results.json rows by label.
    Returns (report.md path, report.html path). A folder config.yaml names that cannot be found is named in the
    report; a folder given explicitly must be of its kind (ValueError, FileNotFoundError). `out_dir` holding
    another run is refused before anything is written (FileExistsError).
    """
    out = Path(out_dir) if out_dir is not None else Path(eval_dir)
    claim_output(out, own=report_owners(eval_dir, out))  # never into another run's folder
    data = gather(eval_dir, teacher, list(distilled) if distilled is not None else None)
    figures = draw_figures(data)
    blocks = compose(data, set(figures))
    figure_dir = out / FIGURE_DIR
    figure_dir.mkdir(parents=True, exist_ok=True)
    for key, png in figures.items():
        atomic_write(figure_dir / f"{key}.png", lambda tmp, png=png: tmp.write_bytes(png))
    md_path, html_path = out / "report.md", out / "report.html"
    atomic_write(md_path, lambda tmp: tmp.write_text(markdown.render(blocks, FIGURE_DIR)))
    title = f"ssdd report: {data.eval_dir.resolve().name}"
    atomic_write(html_path, lambda tmp: tmp.write_text(html.render(blocks, figures, title)))
    return md_path, html_path
