"""One request of the page: the form's values as sample.py's flags, checked by the caller's
planner exactly as on the command line."""

import contextlib
import dataclasses
import io
import random
from collections.abc import Callable, Sequence

RANDOM_SEED = -1  # upstream's gradio_server.py:34 ("Seed (-1 for random)")


class RequestError(Exception):
    """A request that cannot run; the message is the one line to show in the page."""


@dataclasses.dataclass(frozen=True)
class Request:
    prompt: str
    seed: int
    height: float
    width: float
    frames: float
    steps: float
    flow_shift: float
    cfg_scale: float
    first_block_cache: float
    negative_prompt: str = ""  # empty: the mode's default
    embedded_guidance: float | None = None  # None: the model has no guidance embedding
    # HunyuanCustom (files the page uploaded)
    ref_image: str | None = None
    subject_name: str = "object"
    audio: str | None = None
    audio_strength: float = 1.0
    video: str | None = None
    mask: str | None = None

    def argv(self) -> list[str]:
        """sample.py's flags for the request, a random seed drawn for -1. An input video sets the
        size and frames (upstream's editing page has no size controls), so none are passed then."""
        seed = random.randrange(1_000_000) if self.seed == RANDOM_SEED else self.seed
        flags = [("--prompt", self.prompt), ("--seed", seed), ("--infer-steps", self.steps), ("--flow-shift", self.flow_shift),
                 ("--cfg-scale", self.cfg_scale), ("--first-block-cache", self.first_block_cache),
                 ("--embedded-cfg-scale", self.embedded_guidance), ("--neg-prompt", self.negative_prompt or None),
                 ("--ref-image", self.ref_image), ("--input-audio", self.audio), ("--input-video", self.video),
                 ("--mask-video", self.mask)]
        if self.ref_image:
            flags.append(("--subject-name", self.subject_name))
        if self.audio:
            flags.append(("--audio-strength", self.audio_strength))
        if not self.video:
            flags += [("--video-size", (self.height, self.width)), ("--video-length", self.frames)]
        argv = []
        for flag, value in flags:
            if isinstance(value, tuple):
                argv += [flag, *map(_text, value)]
            elif value is not None:  # --flag=TEXT: a text that starts with '-' stays the flag's value
                argv.append(f"{flag}={_text(value)}")
        return argv


def _text(value) -> str:
    """A form value as a flag's text: whole floats (sliders give floats) without '.0', so that
    sample.py's integer flags take them and refuse anything else with their own message."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def checked(planner: Callable[[list[str]], object], argv: Sequence[str]) -> tuple[object, list[str]]:
    """(planner(argv), the lines it printed): a command-line planner run for the page. It
    reports bad input the command-line way (its message on stderr, then SystemExit): that
    message's last line becomes a RequestError."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            result = planner(list(argv))
    except SystemExit as error:
        lines = err.getvalue().strip().splitlines()
        raise RequestError(lines[-1] if lines else f"the request was refused (exit status {error.code})") from None
    return result, [line for line in out.getvalue().splitlines() if line.strip()]
