"""What every run shares: the run folder's safety, the run loop, progress lines, TensorBoard scalars,
torchrun, seeding and devices."""
