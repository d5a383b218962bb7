"""Training target and reference models."""
