"""Child processes of a test that start together: each says "ready" once Django is set up and
connected to the test database, then reads the start instant (epoch seconds) from its stdin;
its last stdout line is its JSON result."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.harness.environment import child_environment
from tests.harness.processes import REPO_ROOT


def run_together(
    tmp_path: Path, code: str, arguments: Sequence[Sequence[str]], *, timeout: float
) -> list[Any]:
    """Run one ``python -c code *arguments[i]`` per entry; once all are ready, give them the
    same start instant, half a second ahead. Returns each one's result, in order; fails with a
    child's stderr when it is not ready or does not exit 0 within ``timeout`` seconds."""
    errors = [(tmp_path / f"child-{index}.err").open("w") for index in range(len(arguments))]
    children: list[subprocess.Popen[str]] = []
    try:
        for args, error in zip(arguments, errors, strict=True):
            children.append(
                subprocess.Popen(
                    [sys.executable, "-c", code, *args],
                    cwd=REPO_ROOT,
                    env=child_environment(),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=error,
                    text=True,
                )
            )
        for index, child in enumerate(children):
            if child.stdout.readline().strip() != "ready":
                child.wait(timeout=60)
                pytest.fail((tmp_path / f"child-{index}.err").read_text())
        start = time.time() + 0.5
        for child in children:
            child.stdin.write(f"{start}\n")
            child.stdin.close()
        results = []
        for index, child in enumerate(children):
            out = child.stdout.read()
            assert child.wait(timeout=timeout) == 0, (tmp_path / f"child-{index}.err").read_text()
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        for error in errors:
            error.close()
