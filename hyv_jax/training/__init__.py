"""Training: flow-matching loss, optimizer, train state and step, LoRA, EMA, checkpoints, data."""
