"""The original Go service's figures, from issue #12 (measured on this kind of machine: 2 cores),
printed beside ours where a benchmark measures the same thing."""

from __future__ import annotations

# Requests per second of POST /email/send, by client concurrency.
INGEST_REQUESTS_PER_SECOND = {1: 91, 8: 113, 32: 109}
# API CPU milliseconds per accepted email (a range over the concurrencies).
INGEST_CPU_MS_PER_EMAIL = (1.4, 2.0)
# Requests per second against a constant-time SQS stand-in, by concurrency.
CEILING_REQUESTS_PER_SECOND = {1: 237, 8: 423, 32: 649}
# Preloaded emails drained: emails per second and duplicates, by size of the burst.
PIPELINE = {
    1000: {"emails_per_second": 70, "duplicates": None},
    5000: {"emails_per_second": 45, "duplicates": 1290},
}
FAILOVER = {"failed_sendgrid_calls": 751, "drain_seconds": (20, 22)}


def pipeline_reference(messages: int) -> dict[str, float | None] | None:
    """The original's figures for a burst of this size, if it was measured."""
    return PIPELINE.get(messages)
