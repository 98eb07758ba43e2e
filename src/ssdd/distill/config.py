"""Schema of `ssdd distill` (outer-loop defaults = KRR-ST's public settings, docs/method.md section 3;
Boost's own options in `boost`, docs/method.md sections 4 and 6)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ssdd.config import DataConfig, ModelConfig
from ssdd.distill.pool import PoolConfig


@dataclass
class OuterConfig:
    """The outer loop that KRR-ST and Boost share (`outer.*`; called `krr.*` before, which still works)."""

    steps: int = 160_000  # outer steps T
    batch_size: int = 1024  # real images per outer step
    lr: float = 1e-4  # AdamW on images and targets (1e-5 for 64 px sources)
    final_lr_ratio: float = 1e-3  # linear decay to final_lr_ratio * lr over the steps
    ridge: float = 1e-6  # lambda = ridge * trace(K_ss), the same lambda in both forms
    form: str = "auto"  # auto (primal when support rows > features + 1, else dual) | primal | dual
    # auto (float64 in the primal form, float32 in the dual) | float32 | float64: the kernel and its solve;
    # features stay in their dtype
    solve_dtype: str = "auto"
    real_crop_padding: int = 4  # RandomCrop(padding) + flip on the real batch
    # under torchrun every process embeds its slice of the real batch; true: also its slice of the support
    # (distilled) rows, all-gathered with gradients (faster at every size measured; same result to rounding)
    split_support: bool = True
    # auto (= on) | on | off: pool members, teacher and batches in the channels-last memory format (same
    # results to float rounding; measured faster on the CPU, BENCHMARKS.md "KRR-ST against the official code")
    channels_last: str = "auto"
    model: ModelConfig = field(default_factory=lambda: ModelConfig(name="convnet", width=128, depth=3))


@dataclass
class BoostConfig:
    """Boost's parameterisation, views and approximation networks. The outer loop (steps, lr, real batch,
    pool) is `outer`/`pool`; the Boost presets set docs/method.md's T = 30,000 at lr 1e-3 there."""

    image_bases: int = 200  # U (0 = store pixel images: parameterisation off on the image side)
    image_resolution: int = 16  # r: the image bases live at r x r and are bilinearly upsampled
    target_bases: int = 200  # V, at most the teacher's d (0 = store full representations)
    basis_init: str = "pca"  # pca | random (random orthonormal bases around the data means)
    coefficient_init: str = "real"  # real (project chosen real images) | random (Gaussian, the data's spread)
    selection: str = "random"  # which real images initialise the coefficients: random | kmeans
    learn_means: bool = False  # also learn the mean image and mean representation (open point 5)
    basis_lr_scale: float = 1.0  # lr of bases and means relative to outer.lr
    augmentations: list[str] = field(default_factory=lambda: ["identity", "rot90", "rot180", "rot270"])
    kernel_views: str = "all"  # all | identity: other views only train the pool models (open point 1)
    real_views: str = "predefined"  # predefined: crop+flip then one random view per real image | crop_flip
    approximation: str = "posthoc"  # posthoc | joint | off (store every view's target)
    approx_hidden: int = 4  # h of the MLP V -> h -> V (16 for 64 px sources)
    approx_space: str = "coefficients"  # coefficients | representations (open point 3)
    approx_steps: int = 2000  # full-batch Adam steps of each post-hoc fit
    approx_lr: float = 1e-3


@dataclass
class MKDTConfig:
    """MKDT's trajectory matching (defaults = the official MKDT code's CIFAR settings; docs/method.md)."""

    experts: str = ""  # an expert-trajectories folder from `ssdd experts` with the same teacher (required)
    iterations: int = 5000  # outer (distillation) iterations
    syn_steps: int = 40  # student SGD steps on the distilled set per iteration
    expert_epochs: int = 2  # M: the student is matched to the expert M epochs after its start
    max_start_epoch: int = 2  # start epochs are drawn from 0 .. max_start_epoch - 1
    batch_syn: int = 256  # distilled images per student step (0 = all)
    lr_images: float = 1000.0  # SGD on the images, which are learned in the teacher-normalised space
    lr_targets: float = 1.0  # SGD on the target representations
    lr_lr: float = 1e-4  # SGD on the student's learnable learning rate
    init_lr: float = 0.1  # the learnable learning rate starts at the experts' lr
    momentum: float = 0.5  # of the three SGD optimisers
    init: str = "high_loss"  # high_loss (the images the experts fit worst) | random
    recompute: bool = True  # recompute each student step in the backward pass: memory bounded in syn_steps


@dataclass
class DistillConfig:
    seed: int = 0
    out_dir: str = "runs/distill"
    device: str = "auto"
    method: str = "krr_st"  # krr_st | boost | mkdt | random | kmeans | high_loss | random_supervised
    name: str = ""  # label of this set in evaluation reports (default: method@budget), e.g. an ablation
    budget: float = 100.0  # storage budget N in image-equivalents
    count_targets: bool = True  # count Y_s in the budget; false = m = N images (KRR-ST paper convention)
    teacher: str = ""  # an ssdd teacher folder (required; from `ssdd teacher` or `ssdd import-teacher`)
    stop_after_steps: int = 0  # run at most this many outer steps in this invocation (0 = to the end)
    checkpoint_every: int = 500  # outer steps between checkpoints
    log_every: int = 50  # outer steps between lines of metrics.jsonl
    tensorboard: bool = False  # also write each log line to out_dir/tensorboard (pip install "ssdd[tensorboard]")
    data: DataConfig = field(default_factory=DataConfig)
    outer: OuterConfig = field(default_factory=OuterConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)
    boost: BoostConfig = field(default_factory=BoostConfig)
    mkdt: MKDTConfig = field(default_factory=MKDTConfig)
    kmeans_iterations: int = 100  # k-means subset: Lloyd iterations


# not device (RNG states are device-specific); not the number of processes either: a checkpoint resumes under
# any. A moved experts folder is checked by its content; outer.channels_last and mkdt.recompute give the same
# results to float rounding.
RESUMABLE_KEYS = ("stop_after_steps", "out_dir", "tensorboard", "outer.split_support", "outer.channels_last",
                  "mkdt.experts", "mkdt.recompute")
# Also free on resume: the label, the log and checkpoint cadence.
FREE_KEYS = ("name", "log_every", "checkpoint_every")
# Sections added after the first methods: a method that does not read one (DistillMethod.reads) ignores it, on
# resume and in a study's cache key (runs and study stages made before the section existed lack it).
OPTIONAL_SECTIONS = ("mkdt",)
