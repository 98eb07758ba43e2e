"""Files for a GPU session that are too large for one call: one tar, cut into parts that each travel in a call
(64 MiB at most with the tracked tree), parked on the warm machine, then joined and checked there.

    python benchmarks/gpu/ferry.py split OUT [--part-mb 40] SOURCE[=NAME] ...
    python benchmarks/gpu/ferry.py join PARKED DEST --sha OUT/SHA256

`split` tars every SOURCE (a file or a folder, stored as NAME, default its own name) and writes the tar in parts
OUT/q1/ferry.tar.01, OUT/q2/ferry.tar.02, ... of at most --part-mb MB, one folder per call, with OUT/SHA256 (the
whole tar's) and OUT/CONTENTS (each member and its size). A call parks its part with
`mkdir -p /tmp/pack && cp .gpu/X/qN/* /tmp/pack/` (carry: .gpu/X/qN); the call that needs the files runs `join`,
which checks the parked parts' SHA-256 against OUT/SHA256 and extracts them into DEST (refusing any member
outside DEST): a lost or damaged part stops it with one line.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import sys
import tarfile
from pathlib import Path

STEM = "ferry.tar"


def write_parts(data: bytes, out: Path, part_mb: float, stem: str = STEM) -> int:
    """`data` in parts of at most part_mb MB, out/q1/<stem>.01, out/q2/<stem>.02, ..., and out/SHA256; the count."""
    size = int(part_mb * 1_000_000)
    count = 0
    for count, start in enumerate(range(0, len(data), size), 1):
        part = out / f"q{count}"
        part.mkdir(parents=True, exist_ok=True)
        (part / f"{stem}.{count:02d}").write_bytes(data[start : start + size])
    (out / "SHA256").write_text(hashlib.sha256(data).hexdigest() + "\n")
    return count


def split(out: Path, sources: list[str], part_mb: float) -> int:
    blob = io.BytesIO()
    lines = []
    with tarfile.open(fileobj=blob, mode="w") as tar:
        for source in sources:
            path, _, name = source.partition("=")
            path = Path(path)
            if not path.exists():
                raise FileNotFoundError(f"{path}: not found")
            tar.add(path, arcname=name or path.name)
    for member in tarfile.open(fileobj=io.BytesIO(blob.getvalue())).getmembers():
        if member.isfile():
            lines.append(f"{member.size:>12}  {member.name}")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    count = write_parts(blob.getvalue(), out, part_mb)
    (out / "CONTENTS").write_text("\n".join(lines) + "\n")
    return count


def join(parked: Path, dest: Path, sha_file: Path, stem: str = STEM) -> list[str]:
    """Check the parked parts against the SHA-256 and extract them into dest; the members' names."""
    parts = sorted(parked.glob(f"{stem}.*"))
    data = b"".join(p.read_bytes() for p in parts)
    want = sha_file.read_text().split()[0]
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        names = ", ".join(p.name for p in parts) or "none"
        raise ValueError(f"the parked parts ({names}) are incomplete or damaged: sha256 {got[:16]}, want {want[:16]}")
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")  # no member outside dest, no links out of it
        return tar.getnames()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("split")
    s.add_argument("out", type=Path)
    s.add_argument("sources", nargs="+", metavar="SOURCE[=NAME]")
    s.add_argument("--part-mb", type=float, default=40.0)
    j = sub.add_parser("join")
    j.add_argument("parked", type=Path)
    j.add_argument("dest", type=Path)
    j.add_argument("--sha", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "split":
            count = split(args.out, args.sources, args.part_mb)
            total = sum(p.stat().st_size for p in args.out.glob("q*/*"))
            print(f"{total / 1e6:.1f} MB in {count} parts under {args.out} (q1 .. q{count}, one per call)")
        else:
            names = join(args.parked, args.dest, args.sha)
            print(f"{len(names)} members in {args.dest}")
    except (OSError, ValueError, tarfile.TarError) as exc:
        print(f"ferry: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
