"""The evaluation protocol (docs/protocol.md): pre-train on each source, fine-tune and linear-probe on each target.

`ssdd.evaluation.protocol.run_evaluate(cfg)` runs it (`ssdd evaluate`); this package exports the linear probe."""

from ssdd.evaluation.linear_probe import ProbeConfig, extract_features, linear_probe, probe_encoder

__all__ = ["ProbeConfig", "extract_features", "linear_probe", "probe_encoder"]
