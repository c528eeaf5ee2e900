"""Exact, invertible tensor transforms between PyTorch layouts and ours.

Each transform knows the PyTorch shape implied by its JAX target shape(s), so shapes are
checked before anything is converted, and `to_torch(to_jax(w)) == w` bit for bit.

Linear weights also map LoRA factors: a PyTorch weight change W = up @ down (up (out, r),
down (r, in)) becomes ours as down (*in_shape, r) and up (r, *out_shape), with the kernel
change down @ up; only the rank axis is shared, so no full matrix is ever formed.
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

    def factors_to_jax(self, down, up, shapes):
        """PyTorch factors down (r, in), up (out, r) -> [(down (*in_shape, r), up (r, *out_shape))]."""
        shape = shapes[0]
        in_order, out_order = self._orders(shape)
        in_shape, out_shape = shape[: self.n_in], shape[self.n_in :]
        r = down.shape[0]
        d = down.reshape(r, *[in_shape[i] for i in in_order]).transpose(0, *[1 + in_order.index(i) for i in range(self.n_in)])
        u = up.reshape(*[out_shape[i] for i in out_order], r)
        u = u.transpose(len(out_order), *[out_order.index(i) for i in range(len(out_order))])
        return [(np.moveaxis(d, 0, -1), u)]

    def factors_to_torch(self, parts, shapes):
        """The inverse: [(down, up)] in our layout -> PyTorch (down (r, in), up (out, r))."""
        d, u = parts[0]
        in_order, out_order = self._orders(shapes[0])
        r = d.shape[-1]
        down = np.moveaxis(d, -1, 0).transpose(0, *[1 + i for i in in_order]).reshape(r, -1)
        up = u.transpose(*[1 + i for i in out_order], 0).reshape(-1, r)
        return down, up


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

    def factors_to_jax(self, down, up, shapes):
        """Cutting the output rows (axis 0) cuts `up` and shares `down`; cutting the input
        columns (axis 1) cuts `down` and shares `up`."""
        sizes = np.cumsum([s[self.axis] for s in self._part_shapes(shapes)])[:-1]
        if self.axis == 0:
            pieces = [(down, u) for u in np.split(up, sizes, axis=0)]
        else:
            pieces = [(d, up) for d in np.split(down, sizes, axis=1)]
        return [p.factors_to_jax(d, u, [s])[0] for p, (d, u), s in zip(self.parts, pieces, shapes, strict=True)]

    def factors_to_torch(self, parts, shapes):
        """The inverse for parts each (down, up) or None (no change). Parts with equal shared
        factors join at their rank; others stack their ranks (block-diagonal), exactly."""
        torch_parts = [None if f is None else p.factors_to_torch([f], [s]) for p, f, s in zip(self.parts, parts, shapes, strict=True)]
        present = [tp for tp in torch_parts if tp is not None]
        if not present:
            raise ValueError("no factors to join")
        sizes = [s[self.axis] for s in self._part_shapes(shapes)]
        shared, cut = (0, 1) if self.axis == 0 else (1, 0)  # factor kept whole / factor cut by the split
        if all(np.array_equal(tp[shared], present[0][shared]) for tp in present):
            whole = present[0][shared]
            r = whole.shape[0] if shared == 0 else whole.shape[1]
            blocks = [tp[cut] if tp is not None else np.zeros((n, r) if cut == 1 else (r, n), whole.dtype)
                      for tp, n in zip(torch_parts, sizes)]
            joined = np.concatenate(blocks, axis=self.axis)
            return (whole, joined) if shared == 0 else (joined, whole)
        ranks = [0 if tp is None else tp[0].shape[0] for tp in torch_parts]
        dtype = present[0][0].dtype
        down = np.zeros((sum(ranks), sum(sizes) if self.axis == 1 else present[0][0].shape[1]), dtype)
        up = np.zeros((sum(sizes) if self.axis == 0 else present[0][1].shape[0], sum(ranks)), dtype)
        row = col = 0
        for tp, n, r in zip(torch_parts, sizes, ranks):
            if tp is not None:
                if self.axis == 0:
                    down[col:col + r], up[row:row + n, col:col + r] = tp
                else:
                    down[col:col + r, row:row + n], up[:, col:col + r] = tp
            row, col = row + n, col + r
        return down, up
