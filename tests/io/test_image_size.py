"""Images too large to decode are refused from their header (before: a 20000x20000 PNG ended in
PIL's DecompressionBombError traceback)."""

import numpy as np
import pytest
from helpers import png_header_only
from PIL import Image

from hyv_jax.io.image_size import check_image_size


def test_size_is_read_from_the_header(tmp_path):
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "a.png")
    assert check_image_size(tmp_path / "a.png") == (40, 30)
    assert check_image_size(png_header_only(tmp_path / "b.png", 8192, 8192)) == (8192, 8192)


@pytest.mark.parametrize("width, height, size", [(20000, 20000, "more than 178,956,970 pixels"), (10000, 9000, "10000x9000 pixels")])
def test_huge_images_are_refused_by_their_header(tmp_path, width, height, size):
    path = png_header_only(tmp_path / "huge.png", width, height)
    with pytest.raises(ValueError, match=rf"--ref-image {path} is {size}; at most 67,108,864 pixels \(8192x8192\) are decoded"):
        check_image_size(path, "--ref-image")


def test_a_file_that_is_not_an_image(tmp_path):
    (tmp_path / "x.png").write_text("hello")
    with pytest.raises(ValueError, match="cannot read image .*x.png"):
        check_image_size(tmp_path / "x.png")
