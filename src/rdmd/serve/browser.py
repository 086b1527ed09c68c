"""Drive the ``rdmd serve`` page in headless Chromium: the browser test, the latency bench and
the docs' screenshots share these steps.

Needs the ``ui`` extra (Selenium) and the Debian packages ``chromium`` and
``chromium-driver``; :func:`missing` says which is absent so callers can skip with a reason.
Latencies are taken inside the page (``performance.now()``): from the slider's ``pointerup``
(or the button's click) to the frame where the new status line is shown and the new output
image has loaded, so Selenium's own round trips are not counted.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")

# Records, per output image, when an event started and when its result was on screen.
WATCH_JS = """
if (!window.__rdmd) {
  window.__rdmd = {};
  const ids = {"rdmd-output": "rdmd-status", "rdmd-compare": "rdmd-compare-status",
               "rdmd-2d-map": "rdmd-2d-status"};
  const check = () => {
    for (const [img_id, status_id] of Object.entries(ids)) {
      const w = window.__rdmd[img_id];
      if (!w || w.shown !== null) continue;
      const img = document.querySelector('#' + img_id + ' img');
      const st = document.querySelector('#' + status_id + ' [data-testid="markdown"]');
      const text = st ? st.innerText : '';
      if (text !== w.text && (text.includes('Error') ||
          (img && img.complete && img.naturalWidth > 0))) {
        w.shown = performance.now(); w.src = img ? img.src : null; w.status = text;
      }
    }
  };
  new MutationObserver(check).observe(document.body,
      {subtree: true, childList: true, attributes: true, characterData: true});
  document.addEventListener('load', check, true);
  window.__rdmd_arm = (img_id, status_id) => {
    const st = document.querySelector('#' + status_id + ' [data-testid="markdown"]');
    window.__rdmd[img_id] = {start: null, shown: null, text: st ? st.innerText : ''};
  };
  document.addEventListener('pointerup', () => {
    for (const w of Object.values(window.__rdmd)) if (w.start === null) w.start = performance.now();
  }, true);
  document.addEventListener('click', () => {
    for (const w of Object.values(window.__rdmd)) if (w.start === null) w.start = performance.now();
  }, true);
}
"""


def missing() -> str | None:
    """Why the browser cannot be driven here, or ``None`` when it can."""
    for mod, hint in (("gradio", 'pip install -e ".[ui]"'), ("selenium", 'pip install -e ".[ui]"')):
        if importlib.util.find_spec(mod) is None:
            return f"needs the Python package {mod} ({hint})"
    if chromium_path() is None or shutil.which("chromedriver") is None:
        return ("needs headless Chromium: the Debian packages chromium and chromium-driver "
                "(apt-get install chromium chromium-driver; .ci/run installs them)")
    return None


def chromium_path() -> str | None:
    return next((p for p in map(shutil.which, CHROMIUM) if p), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(model_dirs: Sequence[str | Path] | None, port: int, log: Path,
                 timeout: float = 600.0, threads: int = 1, fast: bool = True,
                 precision: str | None = None) -> subprocess.Popen:
    """``rdmd serve`` in a subprocess on 127.0.0.1:``port``; returns once the page answers.
    ``fast=False`` serves the page as it was before the latency work, for the bench's
    before/after comparison (``rdmd.serve.app.launch(fast=False)``; no CLI flag);
    ``precision``: ``rdmd serve --precision`` (None: its default)."""
    if fast:
        cmd = [sys.executable, "-m", "rdmd.cli", "serve", "--port", str(port)]
        if model_dirs:
            cmd += ["--model", *map(str, model_dirs)]
        if precision:
            cmd += ["--precision", precision]
    else:
        cmd = [sys.executable, "-c", "import sys; from rdmd.serve.app import launch; "
               "launch(sys.argv[2:] or None, port=int(sys.argv[1]), fast=False)",
               str(port), *map(str, model_dirs or [])]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "GRADIO_ANALYTICS_ENABLED": "False"}
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"rdmd serve exited with {proc.returncode}: {log.read_text()}")
        if answers(port):
            return proc
        time.sleep(1.0)
    stop_server(proc)
    raise TimeoutError(f"rdmd serve did not answer within {timeout:.0f} s: {log.read_text()}")


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            return r.status == 200
    except OSError:
        return False


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def chrome(width: int = 1300, height: int = 1100) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = chromium_path() or ""
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              f"--window-size={width},{height}", "--disable-extensions"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)


class Page:
    """The served page in one browser tab."""

    def __init__(self, driver: Any, port: int, timeout: float = 300.0) -> None:
        from selenium.webdriver.support.ui import WebDriverWait

        self.d, self.port, self.timeout = driver, port, timeout
        self.d.get(f"http://127.0.0.1:{port}/")
        self.wait = WebDriverWait(self.d, timeout, poll_frequency=0.1)
        self.el("#rdmd-upload")
        self.d.execute_script(WATCH_JS)

    def el(self, css: str) -> Any:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec

        return self.wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))

    def text(self, elem_id: str) -> str:
        return str(self.d.execute_script(
            f"const e = document.querySelector('#{elem_id} [data-testid=\"markdown\"]'); "
            "return e ? e.innerText : '';"))

    def tab(self, name: str) -> None:
        from selenium.webdriver.common.by import By

        for b in self.d.find_elements(By.CSS_SELECTOR, "button[role='tab']"):
            if b.text.strip() == name:
                b.click()
                return
        raise LookupError(f"no tab {name!r}")

    # -- one event, timed in the page ------------------------------------------------------

    def _arm(self, img_id: str, status_id: str) -> None:
        self.d.execute_script(f"window.__rdmd_arm('{img_id}', '{status_id}');")

    def _result(self, img_id: str) -> dict[str, Any]:
        self.wait.until(lambda d: d.execute_script(
            f"const w = window.__rdmd['{img_id}']; return w && w.shown !== null;"))
        w = self.d.execute_script(f"return window.__rdmd['{img_id}'];")
        w["latency_ms"] = None if w["start"] is None else w["shown"] - w["start"]
        return w

    def upload(self, paths: Sequence[str | Path]) -> dict[str, Any]:
        """Upload files through the file input; waits for the status line to change."""
        inp = self.el("#rdmd-upload input[type='file']")
        self._arm("rdmd-output", "rdmd-status")
        inp.send_keys("\n".join(str(Path(p).resolve()) for p in paths))
        return self._result("rdmd-output")

    def clear_upload(self) -> None:
        from selenium.webdriver.common.by import By

        for b in self.d.find_elements(By.CSS_SELECTOR, "#rdmd-upload button"):
            if (b.get_attribute("aria-label") or "").lower() in ("clear", "remove"):
                b.click()
                return

    def examples(self) -> dict[str, Any]:
        self._arm("rdmd-output", "rdmd-status")
        self.el("#rdmd-examples").click()
        return self._result("rdmd-output")

    def drag(self, slider_id: str, to: str | float, img_id: str = "rdmd-output",
             status_id: str = "rdmd-status") -> dict[str, Any]:
        """Drag a slider to its ``"min"`` or ``"max"`` end, or to a fraction ``to`` of its
        width (0 = left end, 1 = right end), and release it, as a user does."""
        from selenium.webdriver.common.action_chains import ActionChains

        rng = self.el(f"#{slider_id} input[type='range']")
        self.d.execute_script("arguments[0].scrollIntoView({block: 'center'});", rng)
        half = rng.size["width"] // 2 - 1  # from the centre to the end, inside the window
        frac = {"max": 1.0, "min": 0.0}[to] if isinstance(to, str) else float(to)
        total = round((min(max(frac, 0.0), 1.0) - 0.5) * 2 * half)  # from the centre
        self._arm(img_id, status_id)
        step = int(total / 2)
        (ActionChains(self.d).click_and_hold(rng).move_by_offset(step, 0)
         .move_by_offset(total - 2 * step, 0).move_by_offset(step, 0)
         .release().perform())
        return self._result(img_id)

    def only_methods(self, keep: Sequence[str]) -> None:
        """Tick exactly the Compare tab's baselines in ``keep``."""
        from selenium.webdriver.common.by import By

        for lab in self.d.find_elements(By.CSS_SELECTOR, "#rdmd-methods label"):
            box = lab.find_element(By.CSS_SELECTOR, "input[type='checkbox']")
            if box.is_selected() != (lab.text.strip() in keep):
                lab.click()
        self.wait.until(lambda d: sorted(
            lab.text.strip() for lab in d.find_elements(By.CSS_SELECTOR, "#rdmd-methods label")
            if lab.find_element(By.CSS_SELECTOR, "input").is_selected()) == sorted(keep))

    def click(self, button_id: str, img_id: str, status_id: str) -> dict[str, Any]:
        self._arm(img_id, status_id)
        self.el(f"#{button_id}").click()
        return self._result(img_id)

    def image(self, img_id: str = "rdmd-output") -> np.ndarray:
        """The image shown in ``img_id``, as the server sent it (RGB uint8)."""
        from PIL import Image

        src = self.el(f"#{img_id} img").get_attribute("src")
        with urllib.request.urlopen(src, timeout=30) as r:
            return np.asarray(Image.open(BytesIO(r.read())).convert("RGB"))
