"""Evaluation of encoders: linear probes now; pre-training and fine-tuning join with the distillation issue."""

from ssdd.evaluation.linear_probe import ProbeConfig, extract_features, linear_probe, probe_encoder

__all__ = ["ProbeConfig", "extract_features", "linear_probe", "probe_encoder"]
