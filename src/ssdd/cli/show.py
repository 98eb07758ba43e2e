"""`ssdd show`: look at a distilled set: a grid of its images (one row per image, one column per stored
view) and the distillation loss curve from the run's metrics.jsonl."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ssdd.distill import load_distilled
from ssdd.distill.artifact import DistilledSet
from ssdd.distill.registry import loss_name
from ssdd.report.plots import pyplot, save_figure
from ssdd.run.folder import claim_output


def image_grid(images: torch.Tensor, rows: int, columns: int) -> torch.Tensor:
    """(rows * columns, 3, H, W) in row-major order -> one (H', W', 3) picture with 1-pixel white gaps."""
    _, channels, height, width = images.shape
    grid = torch.ones(channels, rows * (height + 1) + 1, columns * (width + 1) + 1)
    for i in range(rows):
        for j in range(columns):
            top, left = 1 + i * (height + 1), 1 + j * (width + 1)
            grid[:, top : top + height, left : left + width] = images[i * columns + j]
    return grid.permute(1, 2, 0)


IMAGES_FILE = "images.png"
LOSS_FILE = "loss.png"


def default_show_folder(directory: str | Path) -> Path:
    """Where `ssdd show DIR` writes without --out: ./show-<DIR's name> in the current folder (never inside the
    artifact, which stays as the run wrote it)."""
    return Path(f"show-{Path(directory).resolve().name}")


def show_distilled(directory: str | Path, out: str | Path | None = None, count: int = 8) -> list[Path]:
    """Write `<out>/images.png` (images and their views) and `<out>/loss.png` when the run logged a loss; `out` is
    a folder (created), default_show_folder(directory) when None."""
    if count < 1:
        raise ValueError(f"--images/-n must be at least 1, got {count}")
    directory = Path(directory)
    out = Path(out) if out else default_show_folder(directory)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: exists and is not a folder (--out names the folder for the pictures)")
    claim_output(out)  # never into a run's folder (the artifact shown included)
    distilled = load_distilled(directory)
    fig = distilled_figure(distilled, count)
    written = [save_figure(fig, out / IMAGES_FILE)]
    plt = pyplot()
    metrics = directory / "metrics.jsonl"
    if metrics.is_file():
        history = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        if history:
            fig, ax = plt.subplots(figsize=(5, 3.2))
            ax.plot([h["step"] for h in history], [h["loss"] for h in history])
            ax.set(xlabel="outer step", ylabel=loss_name(distilled.method),
                   title=f"{distilled.method} distillation", yscale="log")
            fig.tight_layout()
            written.append(save_figure(fig, out / LOSS_FILE))
    return written


def distilled_figure(distilled: DistilledSet, count: int = 8, title: bool = True, per_row: int = 8) -> Any:
    """A matplotlib figure of the first `count` images of a distilled set: one row per image and one column
    per stored view, or a block of `per_row` images per row for a plain set (used by `ssdd show` and
    `ssdd report`)."""
    images, _ = distilled.training_pairs()
    m = int(distilled.manifest.get("m") or images.shape[0])
    views = images.shape[0] // m  # training pairs are view-major: [a_0(X); a_1(X); ...]
    names = distilled.manifest.get("boost", {}).get("views") or [f"view {k}" for k in range(views)]
    count = max(1, min(count, m))
    if views == 1:  # a plain set: a block of images, `per_row` per row
        columns = min(per_row, count)
        rows = -(-count // columns)
        picked = torch.cat([images[:count], torch.ones(rows * columns - count, *images.shape[1:])])
        titles = None
    else:
        rows, columns = count, views
        picked = torch.stack([images[k * m + i] for i in range(count) for k in range(views)])
        titles = names
    grid = image_grid(picked.float().clamp(0, 1), rows, columns)
    plt = pyplot()
    scale = 1.1 if views > 1 else 1.0
    fig, ax = plt.subplots(figsize=(max(2.5, scale * columns), max(2.0, scale * rows) + 0.6))
    ax.imshow(grid.numpy(), interpolation="nearest")
    ax.set_yticks([])
    ax.set_xticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if titles:  # view names above their columns
        width = images.shape[-1] + 1
        ax.xaxis.tick_top()
        ax.set_xticks([1 + k * width + width / 2 for k in range(len(titles))], titles, fontsize=7)
        ax.tick_params(length=0)
    if title:
        report = distilled.storage()
        fig.suptitle(f"{distilled.method}: m = {m}, {views} view(s), {report.image_equivalents:.1f} "
                     "image-equivalents", fontsize=8)
    fig.tight_layout()
    return fig
