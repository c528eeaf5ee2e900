"""The Gradio page: upstream's gradio_server.py inputs (prompt, resolution, frames, steps, seed,
guidance scale, flow shift, embedded guidance scale) plus the First Block Cache threshold and a
negative prompt, and HunyuanCustom's inputs (reference image, audio, input video + mask, as
hymm_gradio/gradio_{ref2v,audio,editing}.py) when a HunyuanCustom model is loaded. The video
plays in the page; the denoising tqdm bar shows as its progress.

The page checks nothing but that a HunyuanCustom request has its reference image: `generate`
takes sample.py's flags (request.Request.argv) and returns (video path, one line about it), or
raises RequestError with the line to show.
"""

import dataclasses
from collections.abc import Callable

import gradio as gr

from hyv_jax.convert.orbax_io import read_info
from hyv_jax.models.custom.transformer import CustomTransformerConfig
from hyv_jax.models.transformer import TransformerConfig
from hyv_jax.sampling.options import SIZE_MULTIPLE, SamplingOptions
from hyv_jax.ui.request import RANDOM_SEED, Request, RequestError

MAX_SIZE, MAX_FRAMES, MAX_STEPS = 1536, 129, 100  # the ranges of upstream's pages


@dataclasses.dataclass(frozen=True)
class CustomModes:
    """The HunyuanCustom inputs the loaded transformer takes besides the reference image."""

    audio: bool
    editing: bool


@dataclasses.dataclass(frozen=True)
class PageSetup:
    model: str  # shown in the heading (the config)
    notes: tuple[str, ...]  # about the weights (the tiny default's vocabulary, random weights)
    prompt: str
    options: SamplingOptions  # the form's initial values
    embedded_guidance: bool  # the transformer takes the embedded (distilled) guidance scale
    custom: CustomModes | None = None


def model_controls(config, transformer_dir) -> tuple[bool, CustomModes | None]:
    """(whether the transformer takes the embedded guidance scale, HunyuanCustom's inputs or None
    for text to video), from the converted transformer's stored config (the config's own without
    a checkpoint); a HunyuanCustom config has LLaVA's vision tower among its sections."""
    stored = read_info(transformer_dir)["config"] if transformer_dir else config.transformer
    if "vision" not in config:
        return TransformerConfig.from_mapping(stored).guidance_embed, None
    model = CustomTransformerConfig.from_mapping(stored)
    return model.guidance_embed, CustomModes(audio=model.audio_condition, editing=model.video_condition)


def build_page(generate: Callable[[list[str]], tuple[str, str]], setup: PageSetup) -> gr.Blocks:
    o = setup.options
    with gr.Blocks(title="hyv_jax") as page:
        gr.Markdown("\n\n".join([f"# hyv_jax: {setup.model}", *setup.notes]))
        fields: dict[str, gr.components.Component] = {}
        with gr.Row():
            with gr.Column():
                fields["prompt"] = gr.Textbox(label="Prompt", value=setup.prompt, lines=2, elem_id="prompt")
                if setup.custom:
                    fields["ref_image"] = gr.Image(label="Reference image (the subject)", type="filepath", format="png")
                    fields["subject_name"] = gr.Textbox(label="Subject name ('The NAME looks like <image>')", value="object")
                    if setup.custom.audio:
                        fields["audio"] = gr.Audio(label="Speech driving the video", type="filepath")
                        fields["audio_strength"] = gr.Slider(0.0, 2.0, 1.0, step=0.1, label="Audio strength")
                    if setup.custom.editing:
                        gr.Markdown("Editing: the video is made at the input video's size and frames.")
                        fields["video"] = gr.Video(label="Input video to edit", sources=["upload"])
                        fields["mask"] = gr.Video(label="Mask video (white: the region to generate)", sources=["upload"])
                with gr.Row():
                    fields["height"] = gr.Slider(SIZE_MULTIPLE, MAX_SIZE, o.height, step=SIZE_MULTIPLE, label="Height")
                    fields["width"] = gr.Slider(SIZE_MULTIPLE, MAX_SIZE, o.width, step=SIZE_MULTIPLE, label="Width")
                with gr.Row():
                    fields["frames"] = gr.Slider(5, max(MAX_FRAMES, o.frames), o.frames, step=4, label="Frames (4k+1)")
                    fields["steps"] = gr.Slider(1, max(MAX_STEPS, o.steps), o.steps, step=1, label="Inference steps")
                with gr.Accordion("Advanced options", open=False, elem_id="advanced"):
                    fields["seed"] = gr.Number(o.seed, precision=0, label=f"Seed ({RANDOM_SEED} for random)")
                    fields["cfg_scale"] = gr.Slider(1.0, 20.0, o.cfg_scale, step=0.5, label="Guidance scale (true CFG, > 1 on)")
                    if setup.embedded_guidance:
                        fields["embedded_guidance"] = gr.Slider(1.0, 20.0, o.embedded_guidance, step=0.5,
                                                                label="Embedded guidance scale")
                    fields["flow_shift"] = gr.Slider(0.0, 15.0, o.flow_shift, step=0.1, label="Flow shift", elem_id="flow_shift")
                    fields["first_block_cache"] = gr.Slider(0.0, 0.5, o.first_block_cache, step=0.01,
                                                            label="First Block Cache threshold (0 off; about 0.05-0.1 faster)")
                    fields["negative_prompt"] = gr.Textbox(label="Negative prompt (with guidance scale > 1; empty: the default)")
                button = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column():
                video = gr.Video(label="Generated video", autoplay=True, loop=True, elem_id="video")
                info = gr.Markdown(elem_id="info")
        names = {component: name for name, component in fields.items()}

        # one dict of every field (inputs given as a set), so that Gradio sees the positional
        # Progress parameter that makes it follow the denoising tqdm bar
        def run(values: dict, progress=gr.Progress(track_tqdm=True)):  # noqa: B008 - Gradio's way to ask for progress
            request = Request(**{names[component]: value for component, value in values.items()})
            try:
                if setup.custom and not request.ref_image:
                    raise RequestError("HunyuanCustom keeps the subject of a reference image: upload one")
                return generate(request.argv())
            except RequestError as error:
                raise gr.Error(str(error), duration=None, print_exception=False) from None

        button.click(run, inputs=set(fields.values()), outputs=[video, info])
    return page
