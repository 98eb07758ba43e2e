"""Build `ssdd report` for an evaluation folder and screenshot report.html in headless Chromium, to look at
the page as a reader's browser draws it (Debian: `apt-get install chromium`).

    python benchmarks/screenshot_report.py benchmarks/results/gpu_reference \\
        --teacher artifacts/teachers/cifar100_resnet18_bt30_h200 \\
        --distilled artifacts/distilled/cifar100_resnet18_bt30_h200/* --png /tmp/report.png --split 1300

The screenshot is cut below the last drawn row; --split H also writes PNG_part0.png, ... of H pixels each
(for image viewers that shrink tall pictures). --html PATH screenshots an existing page instead.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageChops

from ssdd.report import build_report


def screenshot(html: Path, png: Path, width: int, height: int) -> Path:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("chromium not found (Debian: apt-get install chromium)")
    png.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={png}", f"--window-size={width},{height}", html.resolve().as_uri()],
                   check=True, capture_output=True, timeout=180)
    return png


def trim_bottom(png: Path, margin: int = 24) -> tuple[int, int]:
    """Cut the empty page background below the content; returns the new size."""
    with Image.open(png) as image:
        image = image.convert("RGB")
    background = Image.new("RGB", image.size, image.getpixel((image.width - 1, image.height - 1)))
    box = ImageChops.difference(image, background).getbbox()
    if box is not None:
        image = image.crop((0, 0, image.width, min(image.height, box[3] + margin)))
    image.save(png)
    return image.size


def split(png: Path, part_height: int) -> list[Path]:
    with Image.open(png) as image:
        parts = []
        for i, top in enumerate(range(0, image.height, part_height)):
            path = png.with_name(f"{png.stem}_part{i}.png")
            image.crop((0, top, image.width, min(image.height, top + part_height))).save(path)
            parts.append(path)
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("eval_dir", nargs="?", help="an `ssdd evaluate` folder (omit with --html)")
    parser.add_argument("--out", default=None, help="where build_report writes (default: eval_dir)")
    parser.add_argument("--teacher", default=None)
    parser.add_argument("--distilled", nargs="+", default=None)
    parser.add_argument("--html", default=None, help="screenshot this page instead of building one")
    parser.add_argument("--png", default=str(Path(tempfile.gettempdir()) / "ssdd_report.png"))
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=6000, help="window height; the picture is trimmed after")
    parser.add_argument("--split", type=int, default=0, metavar="H", help="also write parts H pixels tall")
    args = parser.parse_args()
    if args.html:
        html = Path(args.html)
    elif args.eval_dir:
        md, html = build_report(args.eval_dir, args.out, args.teacher, args.distilled)
        print(md)
        print(html)
    else:
        parser.error("give an evaluation folder or --html")
    png = screenshot(html, Path(args.png), args.width, args.height)
    size = trim_bottom(png)
    print(f"{png} ({size[0]} x {size[1]})")
    for part in split(png, args.split) if args.split else []:
        print(part)


if __name__ == "__main__":
    main()
