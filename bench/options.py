"""The options every benchmark takes, and each benchmark's default sizes (full and ``--tiny``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tests.harness import REPO_ROOT

# name -> (full size, tiny size): emails for ingest/raw/ceiling/pipeline/failover.
COUNTS = {
    "ingest": (2000, 40),
    "raw": (2000, 40),
    "ceiling": (2000, 40),
    "pipeline": (5000, 30),
    "failover": (1000, 30),
}
LATENCY_SECONDS = (30.0, 5.0)


@dataclass
class Options:
    """What ``python -m bench`` was asked; see ``bench.cli`` for each option's meaning."""

    sqs_endpoint: str | None = None
    database: str = "sqlite"
    tiny: bool = False
    service_root: Path = REPO_ROOT
    output: Path | None = None
    api_workers: int | None = None
    api_threads: int | None = None
    concurrency: list[int] = field(default_factory=lambda: [1, 8, 32])
    count: int | None = None
    seconds: float | None = None
    rate: float = 2.0
    sendgrid_latency_ms: int = 0
    with_raw: bool = False
    stock_moto_scans: bool = False
    load_processes: int = 2

    def count_for(self, name: str) -> int:
        full, tiny = COUNTS[name]
        return self.count if self.count is not None else (tiny if self.tiny else full)

    def latency_seconds(self) -> float:
        full, tiny = LATENCY_SECONDS
        return self.seconds if self.seconds is not None else (tiny if self.tiny else full)

    def described(self) -> dict[str, object]:
        """The options as the JSON records them (what produced the figures)."""
        return {
            "sqs_endpoint": self.sqs_endpoint or "moto (bench.moto_server)",
            "database": self.database,
            "tiny": self.tiny,
            "timings": "tiny (pipeline 500 ms, backoff 1-2 s)" if self.tiny else "defaults",
            "service_root": str(self.service_root),
            "stock_moto_scans": self.stock_moto_scans,
            "load_processes": self.load_processes,
        }
