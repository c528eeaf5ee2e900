"""app.py in a real browser: the server started on 127.0.0.1 (the shipped tiny default),
headless Chromium submits "a red circle moving left", follows the denoising progress, waits
for the video to play in the page and checks the returned mp4's colour and direction with the
motion check; then a bad value shows sample.py's own message in the page.

The screenshot of the page with the video goes to $HYV_JAX_UI_SCREENSHOT when set (the
README's docs/ui.png is made with HYV_JAX_UI_SCREENSHOT=docs/ui.png), else to the test's
temporary folder."""

import contextlib
import io
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from PIL import Image

from browser import Browser, BrowserError
from hyv_jax.io.video import read_video
from hyv_jax.training.motion_check import check_clip

ROOT = Path(__file__).parents[1]
PROMPT = "a red circle moving left"
SCREENSHOT_ENV = "HYV_JAX_UI_SCREENSHOT"
START_S, REQUEST_S = 240, 420  # bounds on the server start and the first request (CI: 2 shared cores)
# what the page shows: the progress text of the video's status tracker, the video's source and
# playback, an error toast
PROGRESS = "(document.querySelector('#video [data-testid=status-tracker]') || {}).innerText || ''"
VIDEO = "(() => { const v = document.querySelector('#video video'); return v && v.src ? " \
        "{src: v.src, playing: v.readyState >= 2 && !v.paused && v.currentTime > 0, width: v.videoWidth} : null; })()"
ERROR = "[...document.querySelectorAll('[data-testid=toast-text]')].map(e => e.innerText).join(' | ')"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def app_server(folder: Path):
    """app.py on a free port of 127.0.0.1, on one CPU device, its files under `folder`; yields
    its address once it answers."""
    port = free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu", GRADIO_TEMP_DIR=str(folder / "gradio"),
               XLA_FLAGS=re.sub(r"--xla_force_host_platform_device_count=\d+", "", os.environ.get("XLA_FLAGS", "")).strip())
    log = open(folder / "server.log", "w+b")  # noqa: SIM115 - read back on failure, closed below
    process = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--save-path", str(folder / "videos")], cwd=ROOT,
                               env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"

    def log_tail() -> str:
        log.seek(0)
        return log.read().decode(errors="replace")[-3000:]

    try:
        end = time.monotonic() + START_S
        while True:
            if process.poll() is not None:
                raise AssertionError(f"app.py exited with status {process.returncode}:\n{log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > end:
                raise AssertionError(f"app.py did not answer within {START_S} s:\n{log_tail()}")
            time.sleep(0.5)
        try:
            yield url
        except BaseException as error:
            error.add_note(f"app.py's output:\n{log_tail()}")
            raise
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def wait_for_video(browser: Browser) -> tuple[dict, set[str]]:
    """(the video element's state once it plays, the progress texts seen meanwhile)."""
    progress, end = set(), time.monotonic() + REQUEST_S
    while time.monotonic() < end:
        if text := browser.evaluate(PROGRESS):
            progress.add(text)
        if (video := browser.evaluate(VIDEO)) and video["playing"]:
            return video, progress
        if error := browser.evaluate(ERROR):
            raise AssertionError(f"the page showed an error: {error}")
        time.sleep(0.1)
    raise AssertionError(f"no playing video within {REQUEST_S} s; progress seen: {sorted(progress)[-5:]}")


def test_the_page_draws_the_prompt_and_shows_sample_py_messages(tmp_path):
    start = time.monotonic()
    with app_server(tmp_path) as url, Browser() as browser:
        browser.navigate(url)
        browser.wait_for_element("#prompt textarea", 60)
        browser.type_into("#prompt textarea", PROMPT)
        browser.click("#generate")
        video, progress = wait_for_video(browser)
        screenshot = browser.screenshot()
        info = browser.evaluate("document.querySelector('#info [data-testid=markdown]').innerText")
        with urllib.request.urlopen(video["src"], timeout=30) as reply:
            mp4 = reply.read()

        # sample.py's check of the flow shift, its message in the page
        browser.click("#advanced .label-wrap")  # open "Advanced options"
        # the slider's range input follows the component's value: the page took the typed value
        browser.type_into("#flow_shift input[type=number]", "0", until="document.querySelector('#flow_shift input[type=range]').value === '0'")
        browser.click("#generate")
        error = browser.wait_for(ERROR, 60, "the error message")
    elapsed = time.monotonic() - start

    # the denoising tqdm bar (20 steps) as the page's progress
    assert any(re.search(r"\d+/20", text) for text in progress), sorted(progress)
    assert video["width"] == 64 and "seed 0" in info and "64x64, 9 frames, 20 steps" in info, (video, info)
    (tmp_path / "returned.mp4").write_bytes(mp4)
    frames = read_video(tmp_path / "returned.mp4")
    assert frames.shape == (9, 64, 64, 3)
    check = check_clip(frames, PROMPT)
    assert (check.color, check.direction) == ("red", "left"), check
    assert error == "sample.py: error: the flow shift must be > 0 (7.0 for the released model), got 0.0"

    page = Image.open(io.BytesIO(screenshot))
    assert page.size == (1280, 900)
    path = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "ui.png")
    page.convert("RGB").quantize(colors=128).save(path, optimize=True)  # 128 colours: a small PNG for the README
    print(f"page test: {elapsed:.0f} s; screenshot {path}")


def test_browser_errors_name_the_wait():
    with Browser() as browser:
        browser.navigate("data:text/html,<p id=x>hello</p>")
        assert browser.wait_for("document.querySelector('#x') && document.querySelector('#x').innerText", 10, "x") == "hello"
        try:
            browser.wait_for("false", 0.5, "a thing that never comes")
        except BrowserError as error:
            assert "no a thing that never comes within 0.5 s" in str(error)
        else:
            raise AssertionError("wait_for returned for a false condition")


def test_type_into_waits_until_the_input_shows():
    """An input of a closed accordion is in the page, hidden: typing into it went nowhere (the
    page test's flow shift once stayed at its default and sampled instead of failing)."""
    page = ("<input id=x style='display:none'>"
            "<script>setTimeout(() => { document.querySelector('#x').style.display = 'block'; }, 500)</script>")
    with Browser() as browser:
        browser.navigate("data:text/html," + urllib.parse.quote(page))
        browser.wait_for_element("#x", 10)
        browser.type_into("#x", "0", timeout=10)
        assert browser.evaluate("document.querySelector('#x').value") == "0"


def test_type_into_types_again_when_the_page_drops_the_text():
    """A page that re-renders the input once after the first typing (as an opening accordion
    may): the text showed, then went; the page test's flow shift then sampled instead of failing
    (1 failure in a full .ci/run)."""
    page = ("<input id=x value=7><script>let dropped = false; document.querySelector('#x').addEventListener('input', "
            "() => { if (!dropped) { dropped = true; setTimeout(() => { document.querySelector('#x').value = '7'; }, 100); } });"
            "</script>")
    with Browser() as browser:
        browser.navigate("data:text/html," + urllib.parse.quote(page))
        browser.wait_for_element("#x", 10)
        browser.type_into("#x", "0", timeout=10)
        time.sleep(0.3)
        assert browser.evaluate("document.querySelector('#x').value") == "0"
