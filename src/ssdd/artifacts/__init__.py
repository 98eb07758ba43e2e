"""What is stored and how: sharded safetensors with JSON manifests, their integrity checks on save and load,
and the storage accountant (image-equivalents)."""
