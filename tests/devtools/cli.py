"""The command line of a stand-in (``python -m devtools.<module>``), run for a test: started on a
free port, its URL read from its listening line, and stopped with a signal."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def running_cli(
    module: str,
    tmp_path: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Run ``python -m devtools.<module> --port 0 *args`` (``env`` added to this process's
    environment, stderr to ``tmp_path / "stderr.log"``); yield the process and the URL of its
    listening line, read within ``timeout`` seconds. A process still running afterwards is
    killed."""
    stderr_path = tmp_path / "stderr.log"
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", f"devtools.{module}", "--port", "0", *args],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
    try:
        line = read_line(proc, timeout)
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        if match is None:
            pytest.fail(f"no listening line: {line!r}; stderr: {stderr_path.read_text()}")
        yield proc, match.group(1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def assert_exits_zero_on(proc: subprocess.Popen[str], signum: int) -> None:
    """Send ``signum``: the process exits with status 0 within 20 seconds."""
    proc.send_signal(signum)
    assert proc.wait(timeout=20) == 0


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    if not lines:
        proc.kill()
        proc.wait(10)
        pytest.fail(f"no output line within {timeout}s")
    return lines[0]
