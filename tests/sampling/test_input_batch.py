"""--input-json files as the official loader reads them: a .json item or a .list of item files,
each item's prompt, negative prompt, name, seed and inputs, defaults where a key is absent."""

import json
from pathlib import Path

import pytest

from hyv_jax.sampling.input_batch import BatchItem, read_input_batch


@pytest.fixture
def assets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "assets/images").mkdir(parents=True)
    for name in ("seg_poodle.png", "seg_man_01.png"):
        (tmp_path / "assets/images" / name).write_bytes(b"png")
    (tmp_path / "milk_man.mp3").write_bytes(b"mp3")
    # the shipped assets/meta_files/poodle.json and man_01_audio.json, abridged
    poodle = {"item_image_path": "assets/images/poodle.png", "item_prompt": "dog", "seed": 1124,
              "pos_prompt": "A dog is chasing a cat in the park.", "neg_prompt": "", "seg_item_image_path": "assets/images/seg_poodle.png"}
    man = {"item_prompt": "man", "seed": 1026, "audio_path": "milk_man.mp3", "pos_prompt": "A man presents milk.",
           "seg_item_image_path": "assets/images/seg_man_01.png"}
    (tmp_path / "poodle.json").write_text(json.dumps(poodle))
    (tmp_path / "man.json").write_text(json.dumps(man))
    (tmp_path / "items.list").write_text("poodle.json\n\nman.json\n")
    return tmp_path


def test_json_and_list(assets):
    assert read_input_batch("poodle.json") == [
        BatchItem(Path("assets/images/seg_poodle.png"), "dog", "seg_poodle", "A dog is chasing a cat in the park.", "", 1124)]
    poodle_item, man = read_input_batch(assets / "items.list")
    assert poodle_item.name == "dog" and poodle_item.negative_prompt == "" and poodle_item.seed == 1124
    assert (man.name, man.save_name, man.negative_prompt, man.seed, str(man.audio)) == ("man", "seg_man_01", None, 1026, "milk_man.mp3")
    (assets / "bare.json").write_text(json.dumps({"seg_item_image_path": "assets/images/seg_poodle.png"}))
    bare = read_input_batch("bare.json")[0]
    assert (bare.name, bare.prompt, bare.negative_prompt, bare.seed, bare.video) == ("object", None, None, None, None)


@pytest.mark.parametrize("content, message", [
    ({"pos_prompt": "x"}, "no \"seg_item_image_path\""),
    ({"seg_item_image_path": "missing.png"}, "missing.png does not exist"),
    ({"seg_item_image_path": "assets/images/seg_poodle.png", "seed": "7"}, "\"seed\" must be an integer"),
    ({"seg_item_image_path": "assets/images/seg_poodle.png", "pos_prompt": 3}, "\"pos_prompt\" must be a string"),
    ([1, 2], "expected a JSON object"),
])
def test_bad_items_name_the_file_and_the_fix(assets, content, message):
    (assets / "bad.json").write_text(json.dumps(content))
    with pytest.raises(ValueError, match=message):
        read_input_batch("bad.json")
    (assets / "bad.list").write_text("poodle.json\nbad.json\n")
    with pytest.raises(ValueError, match=r"bad.list:2 \(bad.json\)"):
        read_input_batch("bad.list")


def test_bad_files(assets):
    (assets / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_input_batch("broken.json")
    with pytest.raises(ValueError, match="pass a .json item file or a .list"):
        read_input_batch("poodle.txt")
    (assets / "empty.list").write_text("\n")
    with pytest.raises(ValueError, match="lists no item files"):
        read_input_batch("empty.list")
    with pytest.raises(ValueError, match="cannot read"):
        read_input_batch("absent.list")
