"""`smarthub demo` as a user runs it (not headless): the operator page answers during the day and
after it while the fleet keeps being pulled, and Ctrl-C (SIGINT) ends everything with status 0
and no process left behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

KEEPS_RUNNING = "fleet keeps running"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Demo:
    """A ``smarthub demo`` subprocess in its own process group, its standard error collected."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "smarthub.cli", "demo", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            start_new_session=True,
        )
        self.err: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err.append(line)

    def said(self, text: str) -> bool:
        return any(text in line for line in self.err)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.said(text):
            assert self.proc.poll() is None, f"demo ended early: {''.join(self.err)[-3000:]}"
            assert time.monotonic() < deadline, f"no {text!r} in: {''.join(self.err)[-3000:]}"
            time.sleep(0.1)

    def stop(self, timeout: float) -> str:
        """SIGINT, then wait for the exit; standard output."""
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        assert self.proc.stdout is not None
        return self.proc.stdout.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def fleet(port: int) -> list[dict[str, object]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/fleet", timeout=10) as r:
        rows: list[dict[str, object]] = json.loads(r.read())
    return rows


def page(port: int, path: str = "/") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        assert r.status == 200
        return str(r.read().decode())


def pulls(port: int) -> int:
    return sum(int(str(h["pulls"])) for h in fleet(port))


def test_demo_page_answers_after_the_day_and_sigint_ends_it(tmp_path: Path) -> None:
    port = free_port()
    demo = Demo(
        ["--homes", "2", "--seconds-per-day", "8", "--port", str(port), "--state", str(tmp_path / "s")],
        tmp_path,
    )
    try:
        demo.wait_for("operator page:", timeout=120)
        assert "hubs" in page(port)  # during the simulated day
        demo.wait_for(KEEPS_RUNNING, timeout=120)
        before = pulls(port)
        # A simulated half-hour window is 8 s / 48 = 1/6 s of wall time: within a few seconds the
        # GDSC has pulled every hub again (the bug: the page refused connections after the day).
        deadline = time.monotonic() + 60
        while pulls(port) < before + 2 * 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert pulls(port) >= before + 4, "the fleet is no longer pulled after the day"
        assert "hubs" in page(port)
        # The hub detail page and the outage map of the simulated network (two homes, green).
        hub = str(fleet(port)[0]["hub_id"])
        assert f"<h1>Hub {hub}</h1>" in page(port, f"/hubs/{hub}")
        outages = page(port, "/outages")
        assert outages.count('<circle class="premises supplied"') == 2 and "No live outage." in outages
        assert demo.proc.poll() is None

        out = demo.stop(timeout=30)
        assert demo.proc.returncode == 0, "".join(demo.err)[-3000:]
        result = json.loads(out.strip().splitlines()[-1])
        assert (result["homes"], result["missing"], result["duplicates"]) == (2, 0, 0)
        # Nothing of the demo's process group is left (no orphaned worker or server).
        time.sleep(0.2)
        try:
            os.killpg(demo.proc.pid, 0)
            left = True
        except ProcessLookupError:
            left = False
        assert not left, "a process of the demo outlived it"
        try:
            page(port)
            answered = True
        except OSError:
            answered = False
        assert not answered, "the operator page still answers after the demo ended"
        assert "Traceback" not in "".join(demo.err), "".join(demo.err)[-3000:]
    finally:
        demo.kill()


def test_sigint_during_the_day_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    demo = Demo(
        ["--homes", "2", "--seconds-per-day", "60", "--port", str(port), "--state", str(tmp_path / "s")],
        tmp_path,
    )
    try:
        demo.wait_for("operator page:", timeout=120)
        assert "hubs" in page(port)
        demo.stop(timeout=30)
        assert demo.proc.returncode == 0, "".join(demo.err)[-3000:]
        assert demo.said("stopped during the simulated day")
        assert "Traceback" not in "".join(demo.err), "".join(demo.err)[-3000:]
    finally:
        demo.kill()
