"""A procedural captioned video dataset for the embedded tiny default: one coloured shape on a
dark background moving in a stated direction ("a red circle moving left").

Some (colour, shape, direction) combinations are held out of training, so the motion check
(motion_check.py) measures whether the model composes words it saw only apart.
"""

import itertools
from collections.abc import Iterator

import numpy as np

COLORS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230), "yellow": (230, 210, 40),
          "white": (235, 235, 235), "purple": (160, 60, 200)}
SHAPES = ("circle", "square", "triangle")
# (row, column) unit steps: images index rows downwards
DIRECTIONS = {"left": (0.0, -1.0), "right": (0.0, 1.0), "up": (-1.0, 0.0), "down": (1.0, 0.0)}
BACKGROUND = (24, 24, 28)
HELD_OUT = (("red", "circle", "left"), ("blue", "square", "up"), ("green", "triangle", "right"), ("yellow", "circle", "down"))


def caption(color: str, shape: str, direction: str) -> str:
    return f"a {color} {shape} moving {direction}"


def parse_caption(text: str) -> tuple[str, str, str]:
    """(colour, shape, direction) named in a caption; a clear error if one is missing."""
    words = text.lower().replace(",", " ").split()
    found = [next((w for w in words if w in names), None) for names in (COLORS, SHAPES, DIRECTIONS)]
    if None in found:
        raise ValueError(f"caption {text!r} must name a colour {sorted(COLORS)}, a shape {list(SHAPES)} "
                         f"and a direction {sorted(DIRECTIONS)}")
    return tuple(found)


def _shape_mask(shape: str, rows: np.ndarray, cols: np.ndarray, center: tuple[float, float], radius: float) -> np.ndarray:
    dr, dc = rows - center[0], cols - center[1]
    if shape == "circle":
        return dr * dr + dc * dc <= radius * radius
    if shape == "square":
        return (np.abs(dr) <= radius * 0.85) & (np.abs(dc) <= radius * 0.85)
    if shape == "triangle":  # apex up
        return (dr <= radius * 0.8) & (dr >= -radius) & (np.abs(dc) <= (dr + radius) * 0.6)
    raise ValueError(f"unknown shape {shape!r}; choose one of {SHAPES}")


def render(color: str, shape: str, direction: str, *, frames: int, height: int, width: int,
           rng: np.random.Generator) -> np.ndarray:
    """(frames, height, width, 3) uint8: the shape crosses about half the frame."""
    radius = min(height, width) * rng.uniform(0.14, 0.2)
    step = np.array(DIRECTIONS[direction])
    travel = np.array([height, width]) * 0.5
    mid = np.array([height, width]) / 2 + rng.uniform(-0.1, 0.1, 2) * np.array([height, width])
    start = mid - step * travel / 2
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    video = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        center = start + step * travel * (t / max(frames - 1, 1))
        video[t] = BACKGROUND
        video[t][_shape_mask(shape, rows, cols, tuple(center), radius)] = COLORS[color]
    return video


def combinations(held_out: bool = False) -> list[tuple[str, str, str]]:
    """Training combinations (held_out=False) or the held-out test prompts (True)."""
    every = list(itertools.product(COLORS, SHAPES, DIRECTIONS))
    return [c for c in every if (c in HELD_OUT) == held_out]


def scene_items(n: int, *, seed: int = 0, frames: int = 9, height: int = 32, width: int = 32,
                held_out: bool = False) -> Iterator[tuple[np.ndarray, str, str]]:
    """(video, caption, name) items, the input `data_preparation.prepare_dataset` takes."""
    rng = np.random.default_rng(seed)
    combos = combinations(held_out)
    for i in range(n):
        color, shape, direction = combos[rng.integers(len(combos))]
        video = render(color, shape, direction, frames=frames, height=height, width=width, rng=rng)
        yield video, caption(color, shape, direction), f"scene{i:06d}"
