"""HunyuanCustom's `--input-json` batch: one item file (.json) or a list of them (.list, one path
a line), each with its own prompt, negative prompt, subject name, reference image, seed and
(editing / audio) input video, mask and audio, as the official data loader reads them
(hymm_sp/data_kits/video_dataset.py:104-118,138-161,183-185,237). Relative paths are read from
the current directory, as upstream."""

import dataclasses
import json
from pathlib import Path

SUBJECT_NAME = "object"  # video_dataset.py:144, the item's default "item_prompt"


@dataclasses.dataclass(frozen=True)
class BatchItem:
    ref_image: Path
    name: str  # the subject's name in "The {name} looks like<image>"
    save_name: str  # the reference image's file name without extension (video_dataset.py:145)
    prompt: str | None = None  # None: the command line's
    negative_prompt: str | None = None
    seed: int | None = None
    video: Path | None = None
    mask: Path | None = None
    audio: Path | None = None


def _item(data, where: str) -> BatchItem:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object with \"seg_item_image_path\", got {type(data).__name__}")
    if "seg_item_image_path" not in data:
        raise ValueError(f"{where}: no \"seg_item_image_path\" (the reference image); add it")
    path = lambda key: Path(data[key]) if data.get(key) else None  # noqa: E731
    for key in ("seg_item_image_path", "video_path", "mask_path", "audio_path"):
        if data.get(key) and not Path(data[key]).is_file():
            raise ValueError(f"{where}: {key} {data[key]} does not exist (relative paths are read from the current "
                             "directory)")
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"{where}: \"seed\" must be an integer, got {seed!r}")
    for key in ("pos_prompt", "neg_prompt", "item_prompt"):
        if key in data and not isinstance(data[key], str):
            raise ValueError(f"{where}: \"{key}\" must be a string, got {data[key]!r}")
    image = Path(data["seg_item_image_path"])
    return BatchItem(image, data.get("item_prompt", SUBJECT_NAME), image.stem, data.get("pos_prompt"), data.get("neg_prompt"),
                     seed, path("video_path"), path("mask_path"), path("audio_path"))


def _read_json(path: Path, where: str):
    try:
        return json.loads(path.read_text())
    except OSError as error:
        raise ValueError(f"{where}: cannot read {path} ({error.strerror})") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: {path} is not valid JSON ({error.msg}, line {error.lineno})") from error


def read_input_batch(path: str | Path) -> list[BatchItem]:
    """The items of a .json item file or a .list of item files, in order."""
    path = Path(path)
    if path.suffix == ".json":
        return [_item(_read_json(path, str(path)), str(path))]
    if path.suffix != ".list":
        raise ValueError(f"--input-json {path}: pass a .json item file or a .list of them (one path a line), as upstream")
    try:
        lines = [line.strip() for line in path.read_text().splitlines()]
    except OSError as error:
        raise ValueError(f"cannot read {path} ({error.strerror})") from error
    items = [_item(_read_json(Path(line), f"{path}:{i}"), f"{path}:{i} ({line})")
             for i, line in enumerate(lines, start=1) if line]
    if not items:
        raise ValueError(f"{path} lists no item files; write one .json path a line")
    return items
