"""Interrupting a command as a crash would: ``kill -9`` of its whole process group once a condition holds."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable


def run_until(cmd: list[str], condition: Callable[[], bool], timeout: float = 120, poll: float = 0.02) -> int:
    """Start ``cmd`` in its own session and SIGKILL its process group as soon as ``condition()`` is true (or at
    ``timeout``); its exit status (``-SIGKILL`` when killed, 0 when it finished first)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline and not condition():
            time.sleep(poll)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return proc.returncode
