"""Each benchmark of ``bench`` once, at its ``--tiny`` size, only to prove it still works: its
JSON has the expected keys and its counts add up. No figure is judged (benchmarks are not timed
tests). Each runs as ``python -m bench <name> --tiny`` in a process of its own (the bench sets
up Django for itself, on a fresh database), with an environment free of the suite's settings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.options import COUNTS
from tests.harness import REPO_ROOT

BENCH_TIMEOUT_SECONDS = 150
# The suite's own settings, database and metrics directory are not the benchmark's.
_NOT_INHERITED_PREFIXES = ("GOMAIL_", "PYTEST_", "DJANGO_", "DATABASE_URL", "PROMETHEUS_")

pytestmark = [pytest.mark.system, pytest.mark.timeout(BENCH_TIMEOUT_SECONDS + 30)]


def run_bench(name: str, tmp_path: Path) -> dict[str, Any]:
    output = tmp_path / f"{name}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_INHERITED_PREFIXES)}
    done = subprocess.run(
        [sys.executable, "-m", "bench", name, "--tiny", "--output", str(output)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BENCH_TIMEOUT_SECONDS,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert f"## {name}" in done.stdout, done.stdout[-3000:]
    return json.loads(output.read_text())


def tiny(name: str) -> int:
    return COUNTS[name][1]


def check_ingest_rows(data: dict[str, Any], name: str) -> None:
    assert [row["concurrency"] for row in data["rows"]] == [1, 8, 32]
    for row in data["rows"]:
        assert row["requests"] == row["accepted"] == tiny(name), row
        assert row["non_200"] == 0, row
        assert row["requests_per_second"] > 0
        assert row["p50_ms"] <= row["p99_ms"]
        assert row["api_cpu_seconds_per_1000"] > 0
        calls = row["sqs_calls"]
        assert calls["SendMessage"] + calls["SendMessageBatch"] > 0, calls
        assert calls["total"] == sum(calls["by_action"].values())
        assert set(row["sqs_calls_per_email"]) == {"SendMessage", "SendMessageBatch", "others"}


def check_ingest(data: dict[str, Any]) -> None:
    check_ingest_rows(data, "ingest")
    assert data["api"]["worker_processes"] >= 1


def check_ceiling(data: dict[str, Any]) -> None:
    check_ingest_rows(data, "ceiling")
    assert data["options"]["sqs_endpoint"] == "bench.sqs_constant"


def check_raw(data: dict[str, Any]) -> None:
    for row in data["rows"]:
        assert row["calls"] == tiny("raw") and row["failed"] == 0, row
        assert row["calls_per_second"] > 0


def check_ledger(ledger: dict[str, Any], emails: int) -> None:
    assert ledger["emails"] == emails
    assert ledger["statuses"] == {"sent": emails}, ledger
    assert ledger["lost"] == 0, ledger
    delivered = sum(ledger["delivered_by"].values())
    assert delivered - ledger["duplicates"] == emails, ledger


def check_pipeline(data: dict[str, Any]) -> None:
    check_ledger(data["ledger"], tiny("pipeline"))
    assert data["emails_per_second"] > 0
    assert set(data["cpu_seconds_per_1000"]) == {"pipeline", "providers", "beat"}
    assert data["sqs_calls"]["total"] > 0


def check_latency(data: dict[str, Any]) -> None:
    assert data["accepted"] == data["sent"] > 0 and data["non_200"] == 0, data
    check_ledger(data["ledger"], data["accepted"])
    rows = {row["provider"]: row for row in data["rows"]}
    assert rows["all"]["emails"] == data["accepted"]
    assert rows["ses"]["emails"] + rows["sendgrid"]["emails"] == data["accepted"]


def check_failover(data: dict[str, Any]) -> None:
    check_ledger(data["ledger"], tiny("failover"))
    assert data["failed_sendgrid_calls_before_moved"] >= 1, data
    assert data["failed_sendgrid_calls_total"] >= data["failed_sendgrid_calls_before_moved"]
    assert data["ledger"]["delivered_by"]["sendgrid"] == 0


CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "ingest": check_ingest,
    "raw": check_raw,
    "ceiling": check_ceiling,
    "pipeline": check_pipeline,
    "latency": check_latency,
    "failover": check_failover,
}


@pytest.mark.parametrize("name", list(CHECKS))
def test_benchmark_runs_tiny(name: str, tmp_path: Path) -> None:
    data = run_bench(name, tmp_path)
    assert data["benchmark"] == name
    assert data["options"]["tiny"] is True
    CHECKS[name](data)
