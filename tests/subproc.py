"""Helpers for tests that run code in a child process (fork or subprocess)."""

from __future__ import annotations

import json
import os
import signal
import time
import traceback
from typing import Any, Callable

import pytest


def core_env(impl_name: str) -> dict[str, str]:
    """os.environ for a subprocess that must use the core ``impl_name``."""
    env = dict(os.environ)
    if impl_name == "py":
        env["CONNSTATS_NO_EXTENSIONS"] = "1"
    else:
        env.pop("CONNSTATS_NO_EXTENSIONS", None)
    return env


def source_tree_env() -> dict[str, str]:
    """os.environ for a child (``python -m connstats``, possibly under ``ip
    netns exec``) that must import the same connstats as this process: when
    that is the source tree, it goes on PYTHONPATH."""
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ)
    module = sys.modules.get("connstats")
    if module is not None and Path(module.__file__ or "").resolve().is_relative_to(
        root
    ):
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(root), env.get("PYTHONPATH")) if p
        )
    return env


def report_and_exit(w: int, child: Callable[[], Any]) -> None:
    """In a forked child: write child()'s result (or its traceback) as JSON
    to the pipe ``w`` and leave with os._exit."""
    code = 1
    try:
        payload = json.dumps({"ok": child()})
        code = 0
    except BaseException:
        payload = json.dumps({"error": traceback.format_exc()})
    try:
        os.write(w, payload.encode())
    finally:
        os._exit(code)


def collect(pid: int, r: int, timeout: float) -> Any:
    """In the parent: wait for child ``pid`` (killed after ``timeout``), read
    its report from the pipe ``r`` and return what child() returned."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail(
                    f"the forked child did not finish within {timeout} s (deadlock?)"
                )
            time.sleep(0.005)
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
    finally:
        os.close(r)
    report = json.loads(b"".join(chunks) or b'{"error": "no report"}')
    assert "error" not in report, report["error"]
    assert os.waitstatus_to_exitcode(status) == 0
    return report["ok"]


def fork_here(child: Callable[[], Any]) -> Callable[[float], Any]:
    """Fork now: the child runs child() and reports; the parent gets a
    function that waits for the report and returns it."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        report_and_exit(w, child)
    os.close(w)
    return lambda timeout=20.0: collect(pid, r, timeout)
