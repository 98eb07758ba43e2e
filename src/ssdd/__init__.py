"""ssdd: self-supervised dataset distillation (KRR-ST and Boost) with its teacher and evaluation."""

__version__ = "0.1.0"
