"""Schema of `ssdd evaluate` (defaults = docs/protocol.md at `full` scale)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ssdd.config import DataConfig, ModelConfig
from ssdd.evaluation.linear_probe import ProbeConfig


@dataclass
class SupervisedPretrainConfig:
    """Pre-training on a set whose targets are class labels (random_supervised, imported labelled sets).

    `krr_st` is KRR-ST's recipe for such sets: cross-entropy, SGD with the lr, momentum and weight decay
    below, the lr multiplied by `lr_drop` once `lr_drop_at` of the steps have run, and DSA augmentation;
    epochs, max_iterations and batch_size are pretrain's. `same` trains them like the sets with
    representation targets (pretrain.lr, .momentum, .weight_decay, constant lr, no augmentation) but with
    cross-entropy, as ssdd did before this setting existed; the other fields then do nothing."""

    recipe: str = "krr_st"  # krr_st | same
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_drop_at: float = 0.5  # fraction of the SGD steps run (epochs or max_iterations) before the drop
    lr_drop: float = 0.1  # the lr's factor after it
    augment: str = "dsa"  # dsa (one of colour/crop/cutout/flip/scale/rotate per batch) | none


@dataclass
class PretrainConfig:
    """Regression of a fresh network onto the distilled targets (protocol stage 3)."""

    epochs: int = 1000
    max_iterations: int = 0  # stop after this many SGD steps whatever the epochs (0 = no cap; `cpu` scale)
    batch_size: int = 256
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-3
    supervised: SupervisedPretrainConfig = field(default_factory=SupervisedPretrainConfig)  # sets with labels


@dataclass
class FullDataConfig:
    """The ceiling rows: pre-train on all of the source by regressing the teacher's representations.

    `enabled` is the tuned row (the settings below: crop + flip, targets recomputed per batch, cosine lr).
    `same_recipe` is the row retention divides by: every source image with the teacher's representation of
    the un-augmented image, trained exactly like the distilled sets (`pretrain.*`). Each switches on its own."""

    enabled: bool = True  # the tuned row, label full_data
    same_recipe: bool = True  # the distilled rows' recipe on every source image, label full_data_same_recipe
    epochs: int = 100
    batch_size: int = 256
    lr: float = 0.1  # cosine-decayed over the epochs
    momentum: float = 0.9
    weight_decay: float = 1e-3
    crop_padding: int = 4  # RandomCrop + flip on the source images (teacher targets computed per batch)


# The source-scale targets, by name (a target's `name`, compared without case, "-" read as "_"): as in
# KRR-ST's evaluation, these get the long fine-tuning and every other target (the fine-grained ones: Flowers,
# CUB, Cars, Aircraft, Dogs, Pets, ...) the short one, whatever its name or size.
SOURCE_SCALE = ("cifar10", "cifar100", "tinyimagenet", "tiny_imagenet")


@dataclass
class FinetuneConfig:
    """All layers + a new linear head on the target (protocol stage 4)."""

    iterations: int = 10_000  # source-scale targets (small_by=role), or large ones (small_by=size)
    small_iterations: int = 5_000  # every other target: the fine-grained ones (role), or small ones (size)
    small_by: str = "role"  # role: targets named in source_scale get iterations, the others small_iterations
    source_scale: list[str] = field(default_factory=lambda: list(SOURCE_SCALE))  # target names (small_by=role)
    small_threshold: int = 10_000  # small_by=size: targets with fewer training images get small_iterations
    batch_size: int = 256
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    crop_padding: int = 4


@dataclass
class ValidationConfig:
    """Choose on validation, report on test (docs/protocol.md, "Validation split"). `fraction` > 0 holds out
    that share of each target's train split, class by class, drawn with `seed` (ssdd.evaluation.validation):
    fine-tuning and the probe train on the rest, and every row scores the held-out part; the test split is not
    read. 0 (the default) trains on the whole train split and scores the test split."""

    fraction: float = 0.0  # in [0, 1): 0 = score the test split
    seed: int = 0  # the draw of the held-out images; the same for every evaluation seed


@dataclass
class EvaluateConfig:
    seed: int = 0
    seeds: int = 3  # seeds seed, seed+1, ... for every cell
    out_dir: str = "runs/evaluate"
    device: str = "auto"
    distilled: list[str] = field(default_factory=list)  # distilled artifact folders
    no_pretrain: bool = True  # the random-initialisation row
    teacher: str = ""  # an ssdd teacher folder (required): full-data targets and CKA reference
    source: DataConfig = field(default_factory=DataConfig)  # full-data row; its test split feeds CKA
    models: list[ModelConfig] = field(default_factory=lambda: [ModelConfig(name="convnet", width=128, depth=3)])
    targets: list[DataConfig] = field(default_factory=lambda: [
        DataConfig(source="npz", path="data/cifar10.npz", name="cifar10"),
        DataConfig(source="npz", path="data/flowers102_32.npz", name="flowers102"),
    ])
    modes: list[str] = field(default_factory=lambda: ["finetune", "linear_probe"])
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    full_data: FullDataConfig = field(default_factory=FullDataConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    cka_images: int = 1000  # source test images used for linear CKA to the teacher (0 = skip)
    validation: ValidationConfig = field(default_factory=ValidationConfig)  # score a held-out part of train instead
    # auto (= on) | on | off: every network trained or scored here (pre-training, fine-tuning, probe features)
    # and the teacher in the channels-last memory format. Faster on the CPU (docs/performance.md); the results differ
    # from off only by floating-point summation order, so, like `device`, it is not part of what a cell measures.
    channels_last: str = "auto"
    # fp32 | bf16: the arithmetic of the forward passes of every network trained here (pre-training, fine-tuning;
    # losses in float32) and of the teacher's per-batch targets of the tuned full-data row. bf16 (bfloat16
    # autocast, ssdd.evaluation.fastpath) is faster on a GPU but changes the results beyond rounding, so it is
    # part of what a cell measures: `reuse` and --resume never mix the two, and each row records it. The scoring
    # passes (test accuracy, probe features, CKA) and the same-recipe row's targets (computed once) stay float32.
    precision: str = "fp32"
    # auto | on | off: the training forward (and so the backward) of every network pre-trained or fine-tuned here
    # through torch.compile (auto = on on CUDA where torch.compile works; off by default until a GPU measures it).
    # One set of graphs per architecture serves every cell of a process. It differs from off only by
    # floating-point rounding, so, like `channels_last`, it is not part of what a cell measures; rows record it.
    compile: str = "off"
    # a full-data row's pre-training (hundreds of epochs over the whole source) saves its state into out_dir/cells
    # every this many minutes (at an epoch's end), and a --resume goes on from it: the numbers of one uninterrupted
    # attempt (bit for bit on the CPU; 0 = never; the distilled sets' pre-training takes seconds)
    checkpoint_minutes: float = 0.0
    tensorboard: bool = False  # also write every row to out_dir/tensorboard (pip install "ssdd[tensorboard]")
    # Other evaluations' out_dirs whose finished cells this one takes instead of measuring them again. A cell
    # is seeded by itself alone, so one measured with the same settings (everything but the keys that only
    # choose which cells exist: schedule.CELL_CHOICE_KEYS), the same teacher and data is the same measurement.
    # A folder measured otherwise gives nothing; a missing one is skipped with a line. `ssdd reproduce` lists
    # the other evaluations of its out_dir here.
    reuse: list[str] = field(default_factory=list)


# Settings added after evaluations were recorded, each with the value that behaves exactly as before it
# existed. A config holding that value keeps its study cache key and can resume a run saved without it
# (run.folder.config_hash / check_resume_compatible); every new setting of EvaluateConfig belongs here.
LEGACY_VALUES: dict[str, object] = {
    "pretrain.supervised.recipe": "same",  # label sets trained like the regression sets, with cross-entropy
    "pretrain.supervised.lr": 0.01,  # the rest act only under recipe=krr_st: their defaults
    "pretrain.supervised.momentum": 0.9,
    "pretrain.supervised.weight_decay": 5e-4,
    "pretrain.supervised.lr_drop_at": 0.5,
    "pretrain.supervised.lr_drop": 0.1,
    "pretrain.supervised.augment": "dsa",
    "full_data.same_recipe": False,  # no full-data row with the distilled rows' recipe
    "finetune.small_by": "size",  # fine-tuning length by the target's training-set size
    "finetune.source_scale": list(SOURCE_SCALE),  # acts only under small_by=role: its default
    "reuse": [],  # every cell measured here
    "channels_last": "off",  # PyTorch's contiguous layout, used before the setting existed
    "precision": "fp32",  # every forward pass in float32
    "compile": "off",  # every network trained eagerly
    "validation.fraction": 0.0,  # every row scored on the target's test split
    "validation.seed": 0,  # acts only with a fraction: its default
}
