"""Small shared layers: dense, norms, MLPs, timestep embedding, modulation, RoPE, patches."""
