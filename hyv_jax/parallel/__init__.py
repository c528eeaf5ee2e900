"""Meshes, logical-axis rules and sharded placement of parameters."""
