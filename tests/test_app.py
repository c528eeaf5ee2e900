"""app.py without a browser and without running a model: the form's values as sample.py's
flags, sample.py's messages for bad requests and bad server flags, HunyuanCustom's inputs on the
page of a HunyuanCustom model, and the pipeline loaded once for the requests it can serve."""

import sys

import gradio as gr
import numpy as np
import pytest
import soundfile
from PIL import Image

import app
import sample
from configs import load_config
from hyv_jax.loading.shipped import ASSET_DIR
from hyv_jax.ui.page import CustomModes, PageSetup, build_page, model_controls
from hyv_jax.ui.request import Request, RequestError, checked

FORM = dict(prompt="a red circle moving left", seed=0, height=64.0, width=64.0, frames=9.0, steps=20.0, flow_shift=3.0,
            cfg_scale=1.0, first_block_cache=0.0)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("page_inputs")
    Image.fromarray(np.full((40, 30, 3), 200, np.uint8)).save(d / "ref.png")
    soundfile.write(d / "speech.wav", (0.3 * np.sin(np.arange(8000) * 0.05)).astype(np.float32), 16000)
    return d


def test_the_form_becomes_sample_py_flags():
    argv = Request(**FORM, embedded_guidance=6.0, negative_prompt="-blurry").argv()
    assert argv == ["--prompt=a red circle moving left", "--seed=0", "--infer-steps=20", "--flow-shift=3", "--cfg-scale=1",
                    "--first-block-cache=0", "--embedded-cfg-scale=6", "--neg-prompt=-blurry", "--video-size", "64", "64",
                    "--video-length=9"]
    _, args, _ = sample.parse_args(argv)  # whole numbers without '.0': sample.py's integer flags take them
    assert (args.infer_steps, args.video_size, args.video_length, args.neg_prompt) == (20, [64, 64], 9, "-blurry")
    assert Request(**{**FORM, "flow_shift": 2.5}).argv()[3] == "--flow-shift=2.5"
    assert "--seed=-1" not in Request(**{**FORM, "seed": -1}).argv()  # -1: a random seed, as upstream's page
    editing = Request(**FORM, ref_image="ref.png", video="in.mp4", mask="mask.mp4").argv()
    assert "--video-size" not in editing and "--input-video=in.mp4" in editing and "--subject-name=object" in editing


def test_bad_requests_get_sample_py_messages(tmp_path):
    sampler = app.Sampler([f"--save-path={tmp_path}"], None, release_text_encoder=False)
    with pytest.raises(RequestError, match=r"^sample.py: error: the flow shift must be > 0 .*got 0.0$"):
        sampler(Request(**{**FORM, "flow_shift": 0.0}).argv())
    with pytest.raises(RequestError, match=r"^\S+: error: argument --infer-steps: invalid int value: '2.5'$"):
        sampler(Request(**{**FORM, "steps": 2.5}).argv())
    assert sampler.loaded is None  # refused before any model loads
    _, notes = checked(sample.plan, [f"--save-path={tmp_path}", "--video-size", "60", "64"])
    assert any("60" in line and "64" in line for line in notes), notes  # sample.py's rounding note, for the page


@pytest.mark.parametrize("flags, message", [
    (["--config", "configs/tiny_hunyuan_dit.py"], "Hunyuan-DiT text to image"),
    (["--num-videos", "2"], "one video per request"),
    (["--ref-image", "ref.png"], "the page takes HunyuanCustom's inputs"),
])
def test_server_flags_the_page_cannot_serve(flags, message, inputs, tmp_path):
    flags = [str(inputs / f) if f == "ref.png" else f for f in flags]
    with pytest.raises(ValueError, match=message):
        app.main([*flags, "--save-path", str(tmp_path)])


def test_without_gradio_the_server_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)  # importing it fails as when it is not installed
    monkeypatch.delitem(sys.modules, "hyv_jax.ui.page")  # imported again by app.main
    with pytest.raises(ValueError, match=r'needs gradio: pip install -e "\.\[ui\]"'):
        app.main(["--save-path", str(tmp_path)])


def test_server_flags_get_sample_py_checks(tmp_path, capsys):
    with pytest.raises(SystemExit):
        app.main(["--video-length", "6", "--save-path", str(tmp_path)])
    assert "sample.py: error: video length 6 must be 4k + 1 frames (try 5 or 9)" in capsys.readouterr().err


def test_a_custom_model_asks_for_its_inputs():
    assert model_controls(load_config("configs/tiny_default.py"), ASSET_DIR / "transformer") == (True, None)
    assert model_controls(load_config("configs/tiny_custom.py"), None) == (False, CustomModes(audio=True, editing=True))
    options = sample.SamplingOptions(height=64, width=64, frames=9)

    def labels(page):
        return {getattr(block, "label", None) for block in page.blocks.values()}

    t2v = build_page(lambda argv: ("", ""), PageSetup("configs/tiny_default.py", (), "", options, embedded_guidance=True))
    custom = build_page(lambda argv: ("", ""), PageSetup("configs/tiny_custom.py", (), "", options, embedded_guidance=False,
                                                         custom=CustomModes(audio=True, editing=False)))
    assert "Embedded guidance scale" in labels(t2v) and "Reference image (the subject)" not in labels(t2v)
    assert {"Reference image (the subject)", "Speech driving the video"} <= labels(custom)
    assert "Input video to edit" not in labels(custom) and "Embedded guidance scale" not in labels(custom)
    (event,) = custom.fns.values()
    with pytest.raises(gr.Error, match="upload one"):  # no reference image
        event.fn({component: component.value for component in event.inputs})


def test_one_pipeline_serves_the_requests_it_can(inputs, tmp_path, monkeypatch):
    loads = []

    class Loaded:
        release_text_encoder = True

    def load(p, parallel):
        loads.append(p.custom is not None and p.custom.audio is not None)
        return Loaded()

    monkeypatch.setattr(sample, "load_pipeline", load)
    sampler = app.Sampler([], None, release_text_encoder=False)
    plan = lambda *flags: sample.plan([f"--save-path={tmp_path}", "--config", "configs/tiny_custom.py", *flags])  # noqa: E731
    identity = plan("--ref-image", str(inputs / "ref.png"))
    audio = plan("--ref-image", str(inputs / "ref.png"), "--input-audio", str(inputs / "speech.wav"))
    first = sampler.pipeline(identity)
    assert sampler.pipeline(identity) is first and first.release_text_encoder is False  # loaded once, text encoders kept
    with_whisper = sampler.pipeline(audio)  # speech needs Whisper: loaded again with it
    assert with_whisper is not first and sampler.pipeline(identity) is with_whisper and sampler.pipeline(audio) is with_whisper
    assert loads == [False, True]
