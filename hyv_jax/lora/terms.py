"""The neutral form of a LoRA: per parameter of our model (and layer of a stacked one), the
changes a file makes to it, each either low-rank factors with their effective scale or a full
delta, in our layout."""

import dataclasses
from collections.abc import Callable

import numpy as np

Path = tuple[str, ...]
Target = tuple[Path, int | None]  # (parameter path, layer index inside a stacked parameter or None)


@dataclasses.dataclass(frozen=True)
class LowRank:
    """kernel change = scale * down @ up; down (*in_shape, r), up (r, *out_shape), float32."""

    down: np.ndarray
    up: np.ndarray
    scale: float

    @property
    def rank(self) -> int:
        return self.down.shape[-1]

    def delta(self) -> np.ndarray:
        return self.scale * np.tensordot(self.down, self.up, axes=1)

    def compact(self) -> "LowRank":
        """The same change without rank components that contribute nothing (a zero column of
        down or row of up: what joining split modules block-diagonally leaves in each part)."""
        d = self.down.reshape(-1, self.rank)
        u = self.up.reshape(self.rank, -1)
        keep = np.any(d != 0, axis=0) & np.any(u != 0, axis=1)
        return self if keep.all() else LowRank(self.down[..., keep], self.up[keep], self.scale)


@dataclasses.dataclass(frozen=True)
class Full:
    """A full change of one parameter (or layer), read when needed: a `.diff` of a whole
    model would not fit in memory at once."""

    load: Callable[[], np.ndarray]

    def delta(self) -> np.ndarray:
        return self.load()


Term = LowRank | Full


@dataclasses.dataclass(frozen=True)
class LoraUpdates:
    """What one file changes. `format` names the namings found; `skipped` lists keys that map
    to no parameter (only with skip_unknown)."""

    source: str
    format: str
    terms: dict[Target, list[Term]]
    skipped: tuple[str, ...] = ()

    def summary(self) -> str:
        ranks = sorted({t.rank for ts in self.terms.values() for t in ts if isinstance(t, LowRank)})
        full = sum(isinstance(t, Full) for ts in self.terms.values() for t in ts)
        parts = [f"{self.format}", f"{len(self.terms)} parameter slices"]
        if ranks:
            parts.append(f"rank {ranks[0]}" if len(ranks) == 1 else f"ranks {ranks[0]}..{ranks[-1]}")
        if full:
            parts.append(f"{full} full deltas")
        if self.skipped:
            parts.append(f"{len(self.skipped)} keys skipped")
        return f"{self.source}: " + ", ".join(parts)
