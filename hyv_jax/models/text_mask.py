"""Text masks: which of a prompt's L token slots hold tokens. The transformer attends to the
first sum(mask) text tokens of each row (its kv_lengths), so a mask must be right-padded: ones,
then zeros, at least one one. A left-padded or holey mask would silently attend to the padding
and drop real tokens; an all-zero row would make the token refiner's masked mean divide by zero
(NaN video). HunyuanCustom's official conditional mask has ones after its padding on purpose
(llava_fusion.pipeline_mask): there only the 0/1 values and a token per row are required."""

import jax
import numpy as np


def check_text_mask(mask, batch: int | None = None, *, right_padded: bool = True) -> None:
    """Raises ValueError unless `mask` (B, L) is a 0/1 mask with a token in every row, right-padded
    unless told otherwise, with `batch` rows when given (the latents' batch). Under tracing (jit)
    only the shape is checked: the values are checked wherever the mask is concrete (e.g. before
    the loop)."""
    shape = tuple(np.shape(mask))
    if len(shape) != 2:
        raise ValueError(f"the text mask must be (batch, tokens), got shape {shape}")
    if shape[1] == 0:
        raise ValueError("the text is empty (0 token slots): encode the prompt first; every prompt has at least its template tokens")
    if batch is not None and shape[0] != batch:
        raise ValueError(f"the text batch ({shape[0]} prompts) must equal the latent batch ({batch} videos): "
                         f"repeat the prompt embeddings once per video")
    if isinstance(mask, jax.core.Tracer):
        return
    values = np.asarray(mask)
    binary = (values == 0) | (values == 1)
    if not binary.all():
        raise ValueError(f"the text mask must hold only 0 and 1, got {values[~binary].flat[0].item()}")
    ones = values.astype(bool)
    lengths = ones.sum(axis=1)
    empty = np.flatnonzero(lengths == 0)
    if empty.size:
        raise ValueError(f"text mask row {empty[0]} has no token: every prompt needs at least one valid token")
    if not right_padded:
        return
    padded = ones == (np.arange(shape[1])[None] < lengths[:, None])
    if not padded.all():
        row = int(np.flatnonzero(~padded.all(axis=1))[0])
        raise ValueError(f"text mask row {row} ({''.join('1' if v else '0' for v in ones[row][:64])}"
                         f"{'...' if shape[1] > 64 else ''}) is not right-padded: the model attends to the first "
                         f"sum(mask) tokens, so the tokens must come first and the padding after them")
