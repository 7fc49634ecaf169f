"""Training: configs, the shared engine, checkpoints and the train commands (PyTorch, the [train] extra)."""
