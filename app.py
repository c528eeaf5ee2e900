"""The Gradio page of hyv_jax (upstream's gradio_server.py): a prompt in, the video playing in
the page. Needs the `ui` extra (pip install -e ".[ui]").

  python app.py                                          # the shipped tiny default on any machine
  python app.py --model-base ckpts/hyv_jax --host 0.0.0.0   # the released 13B, served to the network
  python app.py --config configs/hunyuan_custom.py --model-base ckpts/custom --llava-dir ckpts/llava

The page asks for the prompt, size, frames, steps, seed, guidance (true CFG and embedded), flow
shift, First Block Cache threshold and negative prompt, and for HunyuanCustom's reference
image, speech (audio checkpoint) and input video + mask (editing checkpoint) when a
HunyuanCustom config is loaded. Every other flag is sample.py's: checkpoint folders, --config and
--config.* overrides, precisions, --lora, the mesh flags; its request flags (--prompt,
--video-size, --infer-steps, --seed, ...) set the form's initial values. Each request is planned
by sample.py's own checks (its one-line messages show in the page), runs on models loaded once
(their compiled programs serve every later request), one request at a time (the others wait
in the queue), and its mp4 is kept in --save-path.
"""

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # as upstream: no calls home

import sample  # noqa: E402
from configs.command_line import add_debug_flag, error_line, run_command  # noqa: E402
from hyv_jax.ui.request import RequestError, checked  # noqa: E402

PORT = 8081  # upstream's SERVER_PORT default
SAVE_PATH = "gradio_outputs"  # upstream's folder


def parse_args(argv) -> tuple[argparse.Namespace, list[str]]:
    """(this page's flags, sample.py's)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1, this machine only; "
                        "0.0.0.0 serves the network, upstream's default)")
    parser.add_argument("--port", type=int, default=PORT, help=f"port (default {PORT}, upstream's)")
    parser.add_argument("--save-path", default=SAVE_PATH, help=f"folder for the videos (default ./{SAVE_PATH}, upstream's)")
    parser.add_argument("--release-text-encoder", action="store_true",
                        help="free the text encoders after each prompt and reload them for the next (sample.py's memory "
                             "use; default: they stay loaded with the other models)")
    add_debug_flag(parser)
    return parser.parse_known_args(argv)


class Sampler:
    """Runs the page's requests: each planned by sample.plan from the server's flags and the
    request's, on a pipeline loaded once and kept (a HunyuanCustom request with speech after
    ones without loads it again with Whisper)."""

    def __init__(self, base_argv: list[str], parallel, release_text_encoder: bool):
        self.base_argv, self.parallel, self.release_text_encoder = base_argv, parallel, release_text_encoder
        self.loaded = None  # (custom, audio, pipeline)

    def pipeline(self, p: sample.Plan):
        custom = p.custom is not None
        audio = custom and p.custom.audio is not None
        if self.loaded is None or self.loaded[0] != custom or (audio and not self.loaded[1]):
            self.loaded = None  # the old models go before the new ones load
            pipeline = sample.load_pipeline(p, self.parallel)
            pipeline.release_text_encoder = self.release_text_encoder
            self.loaded = (custom, audio, pipeline)
        return self.loaded[2]

    def __call__(self, request_argv: list[str]) -> tuple[str, str]:
        p, notes = checked(sample.plan, self.base_argv + request_argv)
        job = p.jobs[0]
        try:
            pipeline = self.pipeline(p)
            start = time.perf_counter()
            videos = sample.sample_job(pipeline, p, job, progress=True)
            seconds = time.perf_counter() - start
            (path,) = sample.save_videos(p.save_path, job, videos, *sample.output_rates(p))
        except Exception as error:  # noqa: BLE001 - the page shows one line, the console the traceback
            traceback.print_exc()
            raise RequestError(error_line("app.py", error)) from None
        o = job.options
        cache = f"{videos.full_steps} of {o.steps} steps ran every block" if videos.full_steps < o.steps else ""
        facts = [*notes, f"seed {videos.seeds[0]}", f"{o.height}x{o.width}, {o.frames} frames, {o.steps} steps", cache,
                 f"sampled in {seconds:.1f} s", f"saved {path}"]
        return str(path), " · ".join(fact for fact in facts if fact)


def main(argv) -> None:
    args, sample_argv = parse_args(argv)
    base_argv = [*sample_argv, f"--save-path={args.save_path}"]
    p = sample.plan(base_argv)  # the server's flags checked as sample.py checks them, before anything loads
    if isinstance(p.options, sample.ImageSamplingOptions):
        raise ValueError(f"app.py makes videos; {p.config_path} is Hunyuan-DiT text to image: run it with sample.py")
    if p.custom is not None or len(p.jobs) > 1:
        raise ValueError("the page takes HunyuanCustom's inputs (reference image, audio, video and mask): start app.py with "
                         "the HunyuanCustom --config and checkpoint flags only")
    if p.options.num_videos != 1:
        raise ValueError("the page shows one video per request: drop --num-videos")
    try:
        from hyv_jax.ui.page import PageSetup, build_page, model_controls
    except ModuleNotFoundError as error:
        if error.name != "gradio":
            raise
        raise ValueError('the page needs gradio: pip install -e ".[ui]"') from None

    parallel = sample.start_jax(p)
    import jax

    if jax.process_count() > 1:
        raise ValueError("app.py serves from one process; a multi-host job samples with sample.py")
    embedded_guidance, custom = model_controls(p.config, p.paths.transformer)
    sampler = Sampler(base_argv, parallel, args.release_text_encoder)
    if custom is None:  # HunyuanCustom's models load with the first request, which says whether Whisper is needed
        sampler.pipeline(p)
    setup = PageSetup(p.config_path, tuple(sample.model_notes(p)), p.prompt, p.options, embedded_guidance, custom)
    page = build_page(sampler, setup)
    page.queue(default_concurrency_limit=1).launch(server_name=args.host, server_port=args.port, show_error=True,
                                                   allowed_paths=[str(Path(args.save_path).resolve())])


if __name__ == "__main__":
    run_command(main, sys.argv[1:], "app.py")
