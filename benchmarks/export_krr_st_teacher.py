"""Write an ssdd ResNet-18 teacher in KRR-ST's exact checkpoint layout, and compare an imported teacher with it.

    python benchmarks/export_krr_st_teacher.py export artifacts/teachers/cifar100_resnet18_bt30_h200 \\
        runs/import_krr_st/barlow_twins_resnet18_cifar100.pt
    ssdd import-teacher runs/import_krr_st/barlow_twins_resnet18_cifar100.pt --format krr_st --dataset cifar100 \\
        --out runs/import_krr_st/teacher ...
    python benchmarks/export_krr_st_teacher.py compare artifacts/teachers/cifar100_resnet18_bt30_h200 \\
        runs/import_krr_st/teacher --data data/cifar100.npz --images 1000 \\
        --json benchmarks/results/import_krr_st/compare.json

`export` builds the network exactly as KRR-ST's train.py does (torchvision resnet18, fc = Identity, conv1 =
Conv2d(3, 64, 3, stride 1, padding 2, bias=False), maxpool = Identity), loads the ssdd teacher's weights into
it with a strict load_state_dict and saves `model.state_dict()` with torch.save: the file KRR-ST's train.py
loads with `target_model.load_state_dict(torch.load(path))`. It checks that this module, fed images normalised
with the teacher's statistics, gives the teacher's features.

`compare` measures how close the imported teacher's features are to the original's on source test images:
once on the same normalised input (the weights alone), once end to end from uint8 images (each teacher with
its own normalisation statistics; KRR-ST's are rounded to 4 decimals).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet18

from ssdd.augment.ops import normalize, to_float
from ssdd.config import DataConfig
from ssdd.data import load_split
from ssdd.run.runtime import file_sha256
from ssdd.teacher import load_teacher


def krr_st_network() -> nn.Module:
    model = resnet18()
    model.fc = nn.Identity()
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=2, bias=False)
    model.maxpool = nn.Identity()
    return model


def export(teacher_dir: str, out: str, images: int) -> None:
    teacher = load_teacher(teacher_dir)
    model = krr_st_network()
    model.load_state_dict(teacher.backbone.state_dict(), strict=True)
    model.eval()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out)
    batch = torch.randint(0, 256, (images, 3, teacher.resolution, teacher.resolution), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = teacher.encode(batch)
        theirs = model(normalize(to_float(batch), teacher.mean, teacher.std))
    diff = (ours - theirs).abs().max().item()
    print(f"wrote {out} ({Path(out).stat().st_size / 2**20:.1f} MiB, {len(model.state_dict())} tensors, "
          f"sha256 {file_sha256(out)[:16]}); KRR-ST's module vs the ssdd teacher on {images} random images: "
          f"max |diff| {diff:.3g}")


@torch.no_grad()
def compare(original_dir: str, imported_dir: str, data: str, images: int, json_path: str | None) -> None:
    original, imported = load_teacher(original_dir), load_teacher(imported_dir)
    test = load_split(DataConfig(source="npz", path=data, resolution=original.resolution), "test").subset(images, 0)
    start = time.perf_counter()
    same_weights = all(torch.equal(a, b) for a, b in zip(original.backbone.state_dict().values(),
                                                         imported.backbone.state_dict().values(), strict=True))
    x = normalize(to_float(test.images), original.mean, original.std)
    f_orig = original.backbone(x)  # = original.encode(test.images)
    same_input = (f_orig - imported.backbone(x)).abs().max().item()
    f_imp = imported.encode(test.images)
    diff = (f_orig - f_imp).abs()
    result = {
        "original": original_dir, "imported": imported_dir, "images": len(test), "data": data,
        "identical_weights": same_weights,
        "same_input_max_abs_diff": same_input,
        "end_to_end_max_abs_diff": diff.max().item(),
        "end_to_end_max_rel_diff": (diff.max() / f_orig.abs().max()).item(),
        "end_to_end_mean_cosine": torch.nn.functional.cosine_similarity(f_orig, f_imp, dim=1).mean().item(),
        "original_normalization": original.manifest["normalization"],
        "imported_normalization": imported.manifest["normalization"],
        "imported_origin": imported.manifest["origin"],
        "imported_linear_probe": imported.manifest["linear_probe"],
        "seconds": time.perf_counter() - start,
        "date": time.strftime("%Y-%m-%d"),
        "device": "cpu",
    }
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, dict)}, indent=2))
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_export = sub.add_parser("export", help="ssdd ResNet-18 teacher -> KRR-ST checkpoint")
    p_export.add_argument("teacher")
    p_export.add_argument("out")
    p_export.add_argument("--images", type=int, default=64, help="random images for the check")
    p_compare = sub.add_parser("compare", help="features of an imported teacher against the original")
    p_compare.add_argument("original")
    p_compare.add_argument("imported")
    p_compare.add_argument("--data", default="data/cifar100.npz")
    p_compare.add_argument("--images", type=int, default=1000)
    p_compare.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    if args.command == "export":
        export(args.teacher, args.out, args.images)
    else:
        compare(args.original, args.imported, args.data, args.images, args.json)


if __name__ == "__main__":
    main()
