"""Headless screenshots of every workbench tab into assets/<tab>.png.

    python scripts/screenshots.py [--model DIR] [--db FILE] [--out assets] [--port 7861] [--chromium /usr/bin/chromium]

Starts `app.py` on the given model and results file, drives a headless Chromium through the Chrome DevTools
Protocol over `--remote-debugging-pipe` (file descriptors 3 and 4, no extra Python package), performs each
tab's main action (a chat message, a beam inspection, a stored query, a pair to judge), waits for the result
and saves a full-page PNG. Install the browser with `apt-get install -y chromium`.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
]
WIDTH, MIN_HEIGHT, MAX_HEIGHT = 1400, 900, 3200

# JavaScript helpers injected into the page: fill a Gradio textbox, click a button, pick a dropdown option.
HELPERS = """
window.wb = {
  fill(id, text) {
    const box = document.querySelector(`#${id} textarea, #${id} input`);
    box.value = text; box.dispatchEvent(new Event('input', {bubbles: true}));
  },
  click(id) { document.querySelector(`#${id}`).click(); },
  async pick(id, index) {
    const input = document.querySelector(`#${id} input`);
    input.focus(); input.click();
    await new Promise(r => setTimeout(r, 600));
    const list = document.getElementById(input.getAttribute('aria-controls'));
    const options = list ? list.querySelectorAll('[role=option]') : [];
    if (options.length <= index) return false;
    options[index].dispatchEvent(new MouseEvent('mousedown', {bubbles: true}));
    return true;
  },
  text(id) { const el = document.querySelector(`#${id}`); return el ? el.innerText : ''; },
  async openFirstCall() {  // expand the first tool call and its beam alternatives, scroll the chat to the top
    const title = (text) => [...document.querySelectorAll('#chat-history .title')]
      .find(t => t.innerText.includes(text));
    const call = title('🛠️') || title('🏁');
    if (call) { call.click(); await new Promise(r => setTimeout(r, 400)); }
    const alternatives = title('Beam alternatives');
    if (alternatives) { alternatives.click(); await new Promise(r => setTimeout(r, 400)); }
    document.querySelectorAll('#chat-history *').forEach(e => { if (e.scrollTop > 0) e.scrollTop = 0; });
  },
};
"""

# tab id -> (element that shows the tab is open, JavaScript starting its main action, condition saying it is
# done, JavaScript arranging the view before the picture)
SHOTS = {
    "chat": (
        "chat-input",
        "wb.fill('chat-input', 'What is the current stock price of NVDA?'); wb.click('chat-send');",
        "wb.text('chat-history').includes('✅') || wb.text('chat-history').includes('without a final answer')",
        "wb.openFirstCall()",
    ),
    "beam": (
        "beam-query",
        "wb.fill('beam-query', 'list the files in my home folder'); wb.click('beam-run');",
        "document.querySelectorAll('#beam-ranked details').length > 0",
        "",
    ),
    "compare": (
        "compare-new",
        "(async () => { if (await wb.pick('compare-run-set', 0)) {"
        " await new Promise(r => setTimeout(r, 1500)); await wb.pick('compare-query', 0); } })()",
        "document.querySelectorAll('#compare-side .wb-col').length > 0"
        " && document.querySelector('#compare-chart .js-plotly-plot') !== null",
        "",
    ),
    "annotate": (
        "annotate-name",
        "wb.fill('annotate-name', 'screenshot'); wb.click('annotate-next');",
        "wb.text('annotate-left').length > 0 || wb.text('annotate-status').includes('Nothing left')",
        "",
    ),
    "leaderboard": ("leaderboard-summary", "", "wb.text('leaderboard-summary').trim().length > 0", ""),
}


class Browser:
    """A headless Chromium driven over the DevTools pipe: one page, commands answered in order."""

    def __init__(self, chromium: str, profile: str):
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()

        def wire_pipes():  # the child's fds 3 (commands in) and 4 (replies out), via high numbers
            read_end = fcntl.fcntl(commands_read, fcntl.F_DUPFD, 10)
            write_end = fcntl.fcntl(replies_write, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self.process = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            pass_fds=(3, 4),
            preexec_fn=wire_pipes,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(commands_read)
        os.close(replies_write)
        self._next_id, self._buffer, self.session = 0, b"", None
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.send("Page.enable")

    def send(self, method: str, **params) -> dict:
        """Send one DevTools command (to the page once attached) and return its result."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._replies, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails'].get('text')}: {expression[:80]}")
        return result["result"].get("value")

    def wait_for(self, condition: str, timeout_s: float) -> bool:
        """Poll `condition` until it is true or `timeout_s` passes."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.evaluate(f"(() => {{ try {{ return Boolean({condition}); }} catch (e) {{ return false; }} }})()"):
                return True
            time.sleep(0.5)
        return False

    def screenshot(self, path: Path) -> None:
        """A PNG of the whole page (up to MAX_HEIGHT pixels tall)."""
        height = self.evaluate("Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=WIDTH,
            deviceScaleFactor=1,
            mobile=False,
            height=max(MIN_HEIGHT, min(MAX_HEIGHT, int(height or MIN_HEIGHT))),
        )
        time.sleep(1.0)  # let plots re-layout at the new size
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        os.close(self._commands)
        os.close(self._replies)


def wait_for_app(url: str, app: subprocess.Popen, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if app.poll() is not None:
            raise RuntimeError(f"app.py exited with code {app.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"the app did not answer at {url} within {timeout_s:.0f} s")


def take(browser: Browser, base_url: str, tab: str, out_dir: Path, timeout_s: float) -> bool:
    """Open `tab`, run its action, wait for the result, save `out_dir/<tab>.png`. False if it timed out."""
    ready, action, done, prepare = SHOTS[tab]
    browser.send(
        "Emulation.setDeviceMetricsOverride", width=WIDTH, height=MIN_HEIGHT, deviceScaleFactor=1, mobile=False
    )
    browser.send("Page.navigate", url=f"{base_url}?tab={tab}")
    if not browser.wait_for(
        f"document.querySelector('#{ready}') !== null && document.querySelector('#{ready}').offsetParent !== null", 90
    ):
        raise TimeoutError(f"{tab}: the page or the tab did not open")
    time.sleep(2.0)  # the load events (choices, tables) settle
    browser.evaluate(HELPERS)
    if action:
        browser.evaluate(action)
    finished = browser.wait_for(done, timeout_s)
    if prepare:
        browser.evaluate(prepare)
    time.sleep(1.0)
    browser.screenshot(out_dir / f"{tab}.png")
    return finished


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="ToolGen checkpoint (default: the app's)")
    parser.add_argument("--db", help="results file (default: the app's); the app holds it while running")
    parser.add_argument("--out", default=str(REPO_ROOT / "assets"))
    parser.add_argument("--port", type=int, default=7861)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--tabs", default=",".join(SHOTS), help="comma-separated tab ids")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for each tab's result")
    args = parser.parse_args(argv)
    if not Path(args.chromium).exists():
        print(f"error: no browser at {args.chromium} (apt-get install -y chromium)", file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(REPO_ROOT / "app.py"), "--port", str(args.port)]
    command += ["--model", args.model] if args.model else []
    command += ["--db", args.db] if args.db else []
    app = subprocess.Popen(command, cwd=REPO_ROOT)
    base_url = f"http://127.0.0.1:{args.port}/"
    try:
        wait_for_app(base_url, app)
        with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
            browser = Browser(args.chromium, profile)
            try:
                for tab in args.tabs.split(","):
                    finished = take(browser, base_url, tab, out_dir, args.timeout)
                    print(f"{out_dir / tab}.png{'' if finished else '  (its action had not finished: timed out)'}")
            finally:
                browser.close()
    finally:
        app.terminate()
        app.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
