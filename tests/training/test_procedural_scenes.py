"""The procedural scene dataset and the motion check: rendered clips pass the check for their
own caption and fail it for another colour, the opposite direction, or no motion."""

import numpy as np

from hyv_jax.training.motion_check import check_clip, summarize
from hyv_jax.training.procedural_scenes import HELD_OUT, caption, combinations, render, scene_items


def test_every_combination_passes_its_own_caption():
    rng = np.random.default_rng(0)
    checks = [check_clip(render(*c, frames=9, height=32, width=32, rng=rng), caption(*c))
              for c in combinations(False) + combinations(True)]
    print(summarize(checks))
    assert summarize(checks) == {"color_accuracy": 1.0, "direction_accuracy": 1.0, "both_accuracy": 1.0}


def test_wrong_colour_opposite_direction_and_static_clips_fail():
    rng = np.random.default_rng(1)
    video = render("red", "circle", "left", frames=9, height=32, width=32, rng=rng)
    c = check_clip(video, "a red circle moving left")
    assert c.color == "red" and c.direction == "left" and c.displacement[1] < -0.3
    assert not check_clip(video, "a blue circle moving left").color_ok
    assert not check_clip(video, "a red circle moving right").direction_ok
    static = np.repeat(video[:1], 9, axis=0)
    assert check_clip(static, "a red circle moving left").direction == "none"
    blank = np.zeros_like(video)
    assert not check_clip(blank, "a red circle moving left").color_ok


def test_training_items_exclude_held_out_prompts():
    items = list(scene_items(40, seed=0, frames=5, height=16, width=16))
    assert len(items) == 40 and items[0][0].shape == (5, 16, 16, 3) and items[0][0].dtype == np.uint8
    held = {caption(*c) for c in HELD_OUT}
    assert not held & {cap for _, cap, _ in items}
    assert {cap for _, cap, _ in scene_items(20, held_out=True)} <= held
