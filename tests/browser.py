"""Headless Chromium (Debian's `chromium`) driven over the DevTools protocol on a pipe
(--remote-debugging-pipe: JSON messages ending in NUL on file descriptors 3 and 4), for the
page tests: nothing downloads a browser build and no WebDriver or websocket library is needed.

Every wait is bounded; a browser that stops answering fails the test instead of hanging it."""

import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time

CHROMIUM = "/usr/bin/chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required", "--remote-debugging-pipe")


class BrowserError(RuntimeError):
    pass


def _pipes_at_3_and_4(to_browser: int, from_browser: int):
    def child() -> None:  # runs in the child before exec: only system calls
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser, from_browser)]
        os.dup2(high[0], 3)  # the browser reads commands on 3
        os.dup2(high[1], 4)  # and writes replies and events on 4
    return child


class Browser:
    """One page of a fresh headless Chromium with an empty profile."""

    def __init__(self, executable: str = CHROMIUM, *, width: int = 1280, height: int = 900, timeout: float = 30.0):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        self.log = tempfile.TemporaryFile()  # the browser's stderr, for the error messages
        command_r, self._command_w = os.pipe()
        self._reply_r, reply_w = os.pipe()
        self.process = subprocess.Popen([executable, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log,
                                        close_fds=False, preexec_fn=_pipes_at_3_and_4(command_r, reply_w))
        os.close(command_r)
        os.close(reply_w)
        self._replies: dict[int, queue.Queue] = {}
        self._lock = threading.Lock()
        self._next_id = 0
        threading.Thread(target=self._read, daemon=True).start()
        target = self.command("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.command("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.command("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                            "mobile": False}, session=True)

    def _read(self) -> None:
        buffer = b""
        while chunk := os.read(self._reply_r, 1 << 16):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                if "id" in message:
                    with self._lock:
                        waiting = self._replies.get(message["id"])
                    if waiting is not None:
                        waiting.put(message)

    def command(self, method: str, params: dict | None = None, *, session: bool = False, timeout: float | None = None) -> dict:
        with self._lock:
            self._next_id += 1
            ident = self._next_id
            self._replies[ident] = replies = queue.Queue()
        message = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        os.write(self._command_w, json.dumps(message).encode() + b"\0")
        try:
            reply = replies.get(timeout=timeout or self.timeout)
        except queue.Empty:
            raise BrowserError(f"chromium did not answer {method} within {timeout or self.timeout} s "
                               f"(exit status {self.process.poll()}); its log ends: {self.log_tail()}") from None
        finally:
            with self._lock:
                del self._replies[ident]
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def log_tail(self, chars: int = 2000) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-chars:]

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (awaited when it is a promise)."""
        result = self.command("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True},
                              session=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} threw {result['exceptionDetails'].get('exception', {}).get('description')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float, what: str, *, every: float = 0.2, fail: str | None = None):
        """Polls `expression` until it is truthy; `fail`: an expression whose truthy value ends the
        wait early with that value as the message (an error shown by the page)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if value := self.evaluate(expression):
                return value
            if fail and (message := self.evaluate(fail)):
                raise BrowserError(f"the page showed an error while waiting for {what}: {message}")
            time.sleep(every)
        raise BrowserError(f"no {what} within {timeout} s")

    def wait_for_element(self, selector: str, timeout: float = 30.0) -> None:
        self.wait_for(f"!!document.querySelector({json.dumps(selector)})", timeout, f"element {selector}")

    def navigate(self, url: str) -> None:
        self.command("Page.navigate", {"url": url}, session=True)

    def type_into(self, selector: str, text: str, timeout: float = 30.0, *, until: str | None = None,
                  settle: float = 0.5) -> None:
        """Replaces the text of the input matched by `selector` as typing would (input events).
        Waits until the input is visible (one in a closed accordion is in the page but takes no
        focus: the text went nowhere), then types until the input holds the text and `until` (an
        expression: the page's own state took the value) is true, both still so `settle` seconds
        later: a re-rendering page (an opening accordion) may drop the text after it showed."""
        element = f"document.querySelector({json.dumps(selector)})"
        self.wait_for(f"(() => {{ const e = {element}; return !!e && e.checkVisibility(); }})()", timeout, f"visible {selector}")
        held = f"({element}.value === {json.dumps(text)})" + (f" && !!({until})" if until else "")
        end = time.monotonic() + timeout
        while True:
            self.evaluate(f"(() => {{ const e = {element}; e.focus(); e.select(); }})()")
            self.command("Input.insertText", {"text": text}, session=True)
            if self.evaluate(held):
                time.sleep(settle)
                if self.evaluate(held):
                    return
            if time.monotonic() > end:
                raise BrowserError(f"no {text!r} held in {selector} within {timeout} s")
            time.sleep(0.2)

    def click(self, selector: str) -> None:
        """A left click in the middle of the element, with the mouse as a user would."""
        self.wait_for_element(selector)
        box = self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.scrollIntoView(); "
                            "const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self.command("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left", "clickCount": 1},
                         session=True)

    def screenshot(self) -> bytes:
        return base64.b64decode(self.command("Page.captureScreenshot", {"format": "png"}, session=True)["data"])

    def close(self) -> None:
        try:
            self.command("Browser.close", timeout=5)
        except (BrowserError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._command_w)
        os.close(self._reply_r)
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
