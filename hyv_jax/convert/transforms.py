"""Exact, invertible tensor transforms between PyTorch layouts and ours.

Each transform knows the PyTorch shape implied by its JAX target shape(s), so shapes are
checked before anything is converted, and `to_torch(to_jax(w)) == w` bit for bit.
"""

import dataclasses
import math

import numpy as np


def _prod(shape) -> int:
    return math.prod(shape)


@dataclasses.dataclass(frozen=True)
class Copy:
    """Same values; JAX may hold them in another shape (e.g. a bias of shape (3, heads, dim)).
    `torch_order` permutes the JAX axes into PyTorch's flattening order."""

    torch_order: tuple[int, ...] | None = None

    def torch_shape(self, shapes):
        return (_prod(shapes[0]),)

    def to_jax(self, array, shapes):
        shape = shapes[0]
        order = self.torch_order or tuple(range(len(shape)))
        return [array.reshape([shape[i] for i in order]).transpose(np.argsort(order))]

    def to_torch(self, parts):
        order = self.torch_order or tuple(range(parts[0].ndim))
        return parts[0].transpose(order).reshape(-1)


@dataclasses.dataclass(frozen=True)
class Same:
    """Same values in the same shape on both sides (embedding tables)."""

    def torch_shape(self, shapes):
        return tuple(shapes[0])

    def to_jax(self, array, shapes):
        return [array]

    def to_torch(self, parts):
        return parts[0]


@dataclasses.dataclass(frozen=True)
class Linear:
    """PyTorch (out, in) weight <-> kernel (*in_shape, *out_shape) with `n_in` input dims.

    `torch_in_order` / `torch_out_order` give PyTorch's flattening order of the JAX in/out
    dims (the patch conv reads (C, pt, ph, pw), we keep (pt, ph, pw, C)); `conv_shape` makes
    `to_torch` return the unflattened (out, *in) shape of a convolution weight.
    """

    n_in: int
    torch_in_order: tuple[int, ...] | None = None
    torch_out_order: tuple[int, ...] | None = None
    conv_shape: bool = False

    def _orders(self, shape):
        n_out = len(shape) - self.n_in
        in_order = self.torch_in_order or tuple(range(self.n_in))
        out_order = self.torch_out_order or tuple(range(n_out))
        return in_order, out_order

    def torch_shape(self, shapes):
        shape = shapes[0]
        in_shape, out_shape = shape[: self.n_in], shape[self.n_in :]
        if self.conv_shape:
            in_order, _ = self._orders(shape)
            return (_prod(out_shape), *[in_shape[i] for i in in_order])
        return (_prod(out_shape), _prod(in_shape))

    def to_jax(self, array, shapes):
        shape = shapes[0]
        in_order, out_order = self._orders(shape)
        in_shape, out_shape = shape[: self.n_in], shape[self.n_in :]
        torch_dims = [out_shape[i] for i in out_order] + [in_shape[i] for i in in_order]
        w = array.reshape(torch_dims)
        n_out = len(out_order)
        # axis of each JAX dim inside the PyTorch-ordered array
        in_axes = [n_out + in_order.index(i) for i in range(self.n_in)]
        out_axes = [out_order.index(i) for i in range(n_out)]
        return [w.transpose(in_axes + out_axes)]

    def to_torch(self, parts):
        kernel = parts[0]
        in_order, out_order = self._orders(kernel.shape)
        n_out = len(out_order)
        axes = [self.n_in + i for i in out_order] + list(in_order)
        w = kernel.transpose(axes)
        out_size = _prod(w.shape[:n_out])
        return w.reshape(out_size, *w.shape[n_out:]) if self.conv_shape else w.reshape(out_size, -1)


@dataclasses.dataclass(frozen=True)
class Split:
    """One PyTorch tensor cut along `axis` into consecutive pieces, each with its own transform
    and JAX target (single blocks' linear1 = [qkv | mlp], linear2 = [attn | mlp] inputs)."""

    axis: int
    parts: tuple

    def _part_shapes(self, shapes):
        return [p.torch_shape([s]) for p, s in zip(self.parts, shapes, strict=True)]

    def torch_shape(self, shapes):
        part_shapes = self._part_shapes(shapes)
        shape = list(part_shapes[0])
        shape[self.axis] = sum(s[self.axis] for s in part_shapes)
        return tuple(shape)

    def to_jax(self, array, shapes):
        sizes = [s[self.axis] for s in self._part_shapes(shapes)]
        pieces = np.split(array, np.cumsum(sizes)[:-1], axis=self.axis)
        return [p.to_jax(piece, [s])[0] for p, piece, s in zip(self.parts, pieces, shapes, strict=True)]

    def to_torch(self, parts):
        return np.concatenate([p.to_torch([x]) for p, x in zip(self.parts, parts, strict=True)], axis=self.axis)
