"""Condition encoders: SigLIP vision tower (images) and T5-v1.1-XXL (instructions)."""
