"""Sanitize stage: load checkpoints safely, keep what inference and fine-tuning need, write safetensors."""
