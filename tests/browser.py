"""Headless Chromium for the tests, driven over the DevTools protocol on a pipe (no network port,
no library): load a page, wait until the page itself says it is done, read what it measured.

The wait is for a condition, not for time: the test's harness script writes an element with a
known id when it has finished, and `render` polls the live page for it. A loaded machine makes the
wait longer, never the answer different (a fixed virtual-time budget did: the DOM was dumped
before the harness wrote its result).
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")


@dataclass
class Rendered:
    result: Any  # what the page's marker element held, parsed as JSON
    dom: str  # the live DOM once the marker was there
    console: list[str] = field(default_factory=list)  # console messages, uncaught errors, log entries


class DevTools:
    """One Chromium process; commands go in on fd 3, answers and events come out on fd 4."""

    def __init__(self, profile: Path, width: int, height: int) -> None:
        assert CHROMIUM is not None, "chromium is not installed (apt-get install chromium)"
        commands_read, self._commands = os.pipe()
        self._answers, answers_write = os.pipe()

        def pipes_on_3_and_4() -> None:  # runs in the child, before exec
            # Out of the way first: a pipe may already sit on 3 or 4, and dup2 onto itself
            # would leave it close-on-exec.
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (commands_read, answers_write)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.process = subprocess.Popen(
            [CHROMIUM, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}",
             f"--window-size={width},{height}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=pipes_on_3_and_4, close_fds=False)
        os.close(commands_read)
        os.close(answers_write)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 60.0) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._answers], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self._answers, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the pipe: " + self.stderr())
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def stderr(self) -> str:
        if self.process.poll() is None:
            return ""
        return (self.process.stderr.read() if self.process.stderr else b"").decode(errors="replace")[-2000:]

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._commands, self._answers):
            os.close(fd)
        if self.process.stderr:
            self.process.stderr.close()


def render(page: Path, marker_id: str, profile: Path, width: int = 1280, height: int = 1000,
           timeout: float = 60.0, phone: bool = False) -> Rendered:
    """Load `page` at `width` px and wait until it holds an element with id `marker_id`; what that
    element says (JSON), the live DOM then, and every console message the page produced.

    `phone`: emulate a phone's screen `width` px wide, meta viewport honoured (a headless window is
    never narrower than 500 px)."""
    browser = DevTools(profile, width, height)
    try:
        target = next(t["targetId"] for t in browser.send("Target.getTargets")["targetInfos"] if t["type"] == "page")
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
            browser.send(domain, session=session)
        if phone:
            browser.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 2,
                                                                "mobile": True}, session=session)
        browser.send("Page.navigate", {"url": page.as_uri()}, session=session)
        read = f"(e => e ? e.textContent : null)(document.getElementById({json.dumps(marker_id)}))"
        deadline = time.monotonic() + timeout
        while True:
            answer = browser.send("Runtime.evaluate", {"expression": read, "returnByValue": True}, session=session)
            value = answer.get("result", {}).get("value")
            if value is not None:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the page never wrote #{marker_id} within {timeout:g} s")
            time.sleep(0.05)
        dom = browser.send("Runtime.evaluate", {"expression": "document.documentElement.outerHTML",
                                                "returnByValue": True}, session=session)["result"]["value"]
        return Rendered(json.loads(value), dom, _console(browser.events))
    finally:
        browser.close()


def _console(events: list[dict[str, Any]]) -> list[str]:
    lines = []
    for event in events:
        params = event.get("params", {})
        if event.get("method") == "Runtime.consoleAPICalled":
            lines.append(f"console.{params.get('type')}: " + " ".join(str(a.get("value", a.get("description")))
                                                                      for a in params.get("args", [])))
        elif event.get("method") == "Runtime.exceptionThrown":
            lines.append("uncaught: " + str(params.get("exceptionDetails", {}).get("text")))
        elif event.get("method") == "Log.entryAdded":
            entry = params.get("entry", {})
            lines.append(f"log {entry.get('level')}: {entry.get('text')}")
    return lines
