"""Arguments of `ssdd import-teacher`, kept free of torch so that building the CLI parser stays fast."""

from __future__ import annotations

import argparse

from ssdd.cli.channel_args import add_channel_argument

FORMATS = ("krr_st", "solo_learn", "state_dict")


def add_import_teacher_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `ssdd import-teacher` (see ssdd.teacher.importers)."""
    parser.add_argument("path", help="the checkpoint (.pt, .pth, .ckpt or .safetensors)")
    parser.add_argument("--format", "-f", required=True, choices=FORMATS,
                        help="krr_st: KRR-ST's barlow_twins_resnet18_*.pt; solo_learn: a solo-learn Lightning "
                             ".ckpt; state_dict: a flat state dict of a registered architecture")
    parser.add_argument("--out", "-o", required=True, help="the teacher artifact folder to write")
    parser.add_argument("--model", default="resnet18", help="registered architecture (default resnet18)")
    parser.add_argument("--width", type=int, default=None, help="model width (default: the architecture's)")
    parser.add_argument("--depth", type=int, default=None, help="model depth (ConvNet; default: the architecture's)")
    parser.add_argument("--feature", default="default", help="ConvNet feature: flatten | pool")
    parser.add_argument("--dataset", default="", help="the teacher's training set: sets the default mean/std "
                        "and resolution of the format (krr_st: cifar100, tinyimagenet, imagenet, ...)")
    add_channel_argument(parser, "--mean", "normalisation mean the teacher was trained with (default: --dataset's)")
    add_channel_argument(parser, "--std", "normalisation std the teacher was trained with (default: --dataset's)")
    parser.add_argument("--resolution", type=int, default=None, help="input size in px (default from --dataset, "
                        "else 32)")
    parser.add_argument("--prefix", default="", help="state_dict: strip this key prefix (e.g. module.)")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow unpickling arbitrary Python objects (runs code from the file): only for "
                             "files you trust")
    parser.add_argument("--probe-data", default=None, metavar="PATH",
                        help="labelled data for a linear probe (.npz, ImageFolder root, torchvision root, digits)")
    parser.add_argument("--probe-source", default="", choices=["", "npz", "folder", "torchvision", "digits"],
                        help="format of --probe-data (default: from the path)")
    parser.add_argument("--probe-name", default="", help="dataset name (torchvision: which dataset)")
    parser.add_argument("--probe-splits", nargs=2, default=["train", "test"], metavar=("TRAIN", "TEST"))
    parser.add_argument("--probe-subset", type=int, nargs=2, default=[0, 0], metavar=("TRAIN", "TEST"),
                        help="random subsets of the probe's splits (0 = all)")
    parser.add_argument("--probe-iterations", type=int, default=5000, help="linear-probe SGD iterations")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (for the probe)")
    parser.add_argument("--save-dtype", default="float32", choices=["float16", "float32"])
    parser.add_argument("--overwrite", action="store_true", help="replace an artifact already in --out")
