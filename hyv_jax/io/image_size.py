"""An image's size from its header, before anything is decoded: a 20000x20000 PNG takes
1.2 GB decoded (PIL refuses it only with a DecompressionBombError traceback)."""

import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

MAX_PIXELS = 8192 * 8192  # 200 MB as RGB; references are resized to the video size anyway


def check_image_size(path: str | Path, what: str = "image", max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) read from the header; raises ValueError for an unreadable file or one
    with more than `max_pixels` pixels."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as image:
                width, height = image.size
        except Image.DecompressionBombError:
            width = height = None
        except (UnidentifiedImageError, OSError) as error:
            raise ValueError(f"cannot read image {path} ({what}): {error}; pass a PNG/JPEG/WebP file") from None
    if width is None or width * height > max_pixels:
        size = f"{width}x{height} pixels" if width is not None else f"more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels"
        raise ValueError(f"{what} {path} is {size}; at most {max_pixels:,} pixels (8192x8192) are decoded: "
                         f"pass a smaller image (it is resized to the video size anyway)")
    return width, height
