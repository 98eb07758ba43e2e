"""Arguments of `ssdd import-distilled` and `ssdd export` (kept free of torch so `ssdd --help` stays fast)."""

from __future__ import annotations

import argparse
from typing import Any

from ssdd.cli.channel_args import add_channel_argument


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="KRR-ST's x_syn.pt, a folder holding x_syn.pt and y_syn.pt, or a folder of "
                                       "PNG/JPG images (sorted by file name)")
    parser.add_argument("--out", "-o", required=True, help="the artifact folder to write")
    parser.add_argument("--format", default="auto", choices=["auto", "krr_st", "images"],
                        help="auto: krr_st for a .pt file or a folder with x_syn.pt, images otherwise")
    parser.add_argument("--y-syn", default=None, metavar="FILE", help="KRR-ST targets (default: y_syn.pt beside x_syn)")
    parser.add_argument("--targets", default=None, metavar="FILE.npy|teacher",
                        help="image folder: targets (N x d float, row i = i-th image by name) or labels (N,) int "
                             "(default: the folder's own targets.npy or labels.npy, as `ssdd export` writes); "
                             "`teacher`: --teacher's representations of the images, even where the folder holds "
                             "a file")
    parser.add_argument("--teacher", default=None, metavar="DIR",
                        help="the ssdd teacher the targets came from (d and resolution checked); an image folder "
                             "with no targets file (or --targets teacher) gets this teacher's representations as "
                             "targets")
    parser.add_argument("--dataset", default=None,
                        help="source dataset (cifar100, tinyimagenet, ...): KRR-ST's mean/std for un-normalising "
                             "x_syn (default: guessed from the path)")
    add_channel_argument(parser, "--mean", "the set's normalisation mean (KRR-ST: the one x_syn was normalised "
                                           "with), instead of --dataset's, the teacher's or the images' own")
    add_channel_argument(parser, "--std", "the set's normalisation std, like --mean")
    parser.add_argument("--budget", type=float, default=None,
                        help="budget in image-equivalents to label the set with (default: what it occupies)")
    parser.add_argument("--budget-counts", default="all", choices=["all", "images"],
                        help="images: KRR-ST's paper convention, targets not counted against the budget")
    parser.add_argument("--name", default=None,
                        help="label in evaluation reports (default: <the exported set's name>-imported for an "
                             "`ssdd export` folder, else imported_<folder>)")
    parser.add_argument("--source-images", type=int, default=None,
                        help="images in the source train split (for the compression ratio)")
    parser.add_argument("--num-classes", type=int, default=None, help="classes, for sets that hold labels")
    parser.add_argument("--device", default="cpu", help="where --teacher computes targets (cpu, cuda, auto)")


def import_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"y_path": args.y_syn, "targets": args.targets, "teacher": args.teacher, "dataset": args.dataset,
            "mean": args.mean, "std": args.std, "budget": args.budget,
            "count_targets": args.budget_counts == "all", "name": args.name, "source_images": args.source_images,
            "num_classes": args.num_classes, "device": args.device}


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="a distilled artifact folder (any method, imported sets included)")
    parser.add_argument("--out", "-o", required=True, help="an empty or new folder for the PNGs, .npy and index.json")
