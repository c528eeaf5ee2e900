"""Motion check of generated clips: does "a red circle moving left" give a red blob moving left?

  python bench/motion_check.py --videos samples/       (each x.mp4 with its prompt in x.txt)
  python bench/motion_check.py --rendered 24           (the check on rendered held-out scenes:
                                                        its ceiling, 100% by construction)
Prints per-clip colour/direction found and the accuracies over the clips.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))
from hyv_jax.training.data_preparation import folder_items  # noqa: E402
from hyv_jax.training.motion_check import check_clip, summarize  # noqa: E402
from hyv_jax.training.procedural_scenes import scene_items  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--videos", help="folder of generated clips with .txt prompts")
    src.add_argument("--rendered", type=int, help="check this many rendered held-out scenes")
    args = p.parse_args()
    items = folder_items(args.videos) if args.videos else scene_items(args.rendered, seed=1, held_out=True)
    checks = []
    for video, prompt, name in items:
        c = check_clip(video, prompt)
        checks.append(c)
        print(f"{name}: {prompt!r} -> colour {c.color}, direction {c.direction}, displacement {c.displacement[0]:+.2f},{c.displacement[1]:+.2f}")
    print(summarize(checks))


if __name__ == "__main__":
    main()
