"""Headless Chromium driven through the DevTools protocol, for the browser tests of the report.

A page is opened from disk (file://), with software WebGL (SwiftShader), and every console error,
uncaught exception and log error is collected, so a test can assert that there was none.
"""
from __future__ import annotations

import base64
import io
import itertools
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
START_TIMEOUT_S = 30.0

# software WebGL2 in a headless browser with no GPU: ANGLE on SwiftShader
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu-sandbox", "--no-first-run", "--no-default-browser-check",
    "--disable-extensions", "--disable-background-networking", "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist", "--window-size=1280,1000", "--remote-debugging-port=0",
)


def find_chromium() -> str | None:
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


class Browser:
    """One Chromium with one page; ``errors`` gathers what the console reported as an error."""

    def __init__(self, executable: str) -> None:
        import websocket  # websocket-client (requirements-dev.txt)

        self._profile = tempfile.TemporaryDirectory(prefix="chromium-")
        self._process = subprocess.Popen(
            [executable, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile.name}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        port = self._port()
        target = next(t for t in self._targets(port) if t["type"] == "page")
        self._socket = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=START_TIMEOUT_S,
                                                   suppress_origin=True)
        self._ids = itertools.count(1)
        self.errors: list[str] = []
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")

    def _port(self) -> int:
        active = Path(self._profile.name) / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if active.is_file() and (lines := active.read_text().split()):
                return int(lines[0])
            if self._process.poll() is not None:
                raise RuntimeError(f"chromium exited with status {self._process.returncode}")
            time.sleep(0.1)
        raise TimeoutError("chromium did not open its DevTools port")

    @staticmethod
    def _targets(port: int) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            return json.load(response)

    def _collect(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.errors.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            self.errors.append(params["entry"].get("text", ""))

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command and its result; events that arrive meanwhile are collected."""
        ident = next(self._ids)
        self._socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._collect(message)

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, path: Path, ready: str = "document.readyState === 'complete'", timeout_s: float = 60.0) -> None:
        """Navigate to ``path`` from disk and wait until the JavaScript ``ready`` is true."""
        url = path.resolve().as_uri()
        self.send("Page.navigate", url=url)
        check = f"(() => {{ try {{ return location.href === {json.dumps(url)} && Boolean({ready}); }} catch (e) {{ return false; }} }})()"
        deadline = time.monotonic() + timeout_s
        while not self.evaluate(check):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path}: not ready after {timeout_s} s ({ready}); console errors: {self.errors}")
            time.sleep(0.2)

    def screenshot(self, selector: str) -> np.ndarray:
        """The RGB pixels of the element ``selector`` as the page shows it."""
        box = self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.scrollIntoView();"
                            " const r = e.getBoundingClientRect();"
                            " return [r.x + window.scrollX, r.y + window.scrollY, r.width, r.height]; })()")
        time.sleep(0.5)  # a frame drawn where it is now seen
        x, y, width, height = box
        shot = self.send("Page.captureScreenshot", format="png",
                         clip={"x": x, "y": y, "width": width, "height": height, "scale": 1},
                         captureBeyondViewport=True)
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB"))

    def close(self) -> None:
        try:
            self._socket.close()
        finally:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._profile.cleanup()
