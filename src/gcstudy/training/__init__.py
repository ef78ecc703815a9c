"""Training a network: one run (trainer) and its checkpoints."""
