"""Prometheus metrics of every Gomail process, and the ``/metrics`` view that serves them.

Counters and histograms are written by whichever process observes the event (API workers,
pipeline, provider workers). With ``PROMETHEUS_MULTIPROC_DIR`` set (``make run`` and the
tests set it), prometheus-client keeps them in files in that directory and ``/metrics`` adds
up every process's; without it, ``/metrics`` shows only the serving process's own counters.
Gauges of state (provider health, queue depths, the oldest waiting email) are read when
scraped, from the dispatch cache, SQS and the email records; the last pipeline run's time is
a gauge the pipeline sets.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from dispatch.health_store import save_last_run

EMAILS_ACCEPTED = Counter("gomail_emails_accepted", "Emails accepted by the API (queued in SQS).")
EMAILS_SENT = Counter("gomail_emails_sent", "Emails a provider accepted.", ["provider"])
EMAILS_FAILED = Counter(
    "gomail_emails_failed",
    "Provider calls that failed, by provider and error class.",
    ["provider", "kind"],
)
UNKNOWN_OUTCOMES = Counter(
    "gomail_unknown_outcomes",
    "Provider calls whose outcome was unknown (each may have delivered a duplicate).",
    ["provider"],
)
DEAD_LETTERED = Counter(
    "gomail_dead_lettered", "Messages moved to the dead-letter queue.", ["cause"]
)
PIPELINE_RUN_SECONDS = Histogram(
    "gomail_pipeline_run_seconds",
    "Duration of a pipeline run.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
PIPELINE_MESSAGES = Histogram(
    "gomail_pipeline_messages_per_run",
    "Messages read and dispatched by one pipeline run.",
    buckets=(0, 1, 10, 50, 100, 500, 1000, 5000, 20000),
)
# Set by the pipeline process at the end of each finished run. "max" across processes: the
# latest run of any pipeline worker, kept after that process exited (a timestamp only grows).
PIPELINE_LAST_RUN = Gauge(
    "gomail_pipeline_last_run_timestamp_seconds",
    "Unix time at which the last pipeline run finished.",
    multiprocess_mode="max",
)
API_LATENCY = Histogram(
    "gomail_api_request_seconds",
    "API request latency, by route and status code.",
    ["method", "route", "status"],
)


class StateCollector(Collector):
    """Gauges read at scrape time: provider health, incoming and dead-letter queue depth."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from dispatch.health_store import provider_health  # Django apps are ready by now
        from dispatch.inbox import queue_levels
        from emails.records import oldest_waiting_accepted_at

        gomail = settings.GOMAIL
        healthy = GaugeMetricFamily(
            "gomail_provider_healthy",
            "1 when the provider is healthy, else 0.",
            labels=["provider"],
        )
        in_flight = GaugeMetricFamily(
            "gomail_provider_in_flight",
            "Messages dispatched to the provider and not yet settled.",
            labels=["provider"],
        )
        for health in provider_health(
            [(name, cfg.enabled) for name, cfg in gomail.providers.items()]
        ):
            healthy.add_metric([health.name], 1 if health.state.healthy else 0)
            in_flight.add_metric([health.name], health.in_flight)
        yield healthy
        yield in_flight

        depth = GaugeMetricFamily(
            "gomail_queue_depth",
            "Approximate visible messages per queue (incoming and dead-letter).",
            labels=["queue", "kind"],
        )
        queues = [(name, "incoming") for name in gomail.sqs.incoming_queues]
        queues.append((gomail.sqs.dead_letter_queue, "dead_letter"))
        for name, kind in queues:
            try:
                depth.add_metric([name, kind], queue_levels(name).depth)
            except (BotoCoreError, ClientError):
                continue  # an unreachable queue has no value rather than a wrong one
        yield depth

        yield GaugeMetricFamily(
            "gomail_oldest_waiting_email_age_seconds",
            "Age of the oldest email still queued, sending or failed (0 when none waits).",
            value=waiting_age_seconds(oldest_waiting_accepted_at(), timezone.now()),
        )


def waiting_age_seconds(accepted_at: datetime | None, now: datetime) -> float:
    """How long the oldest waiting email has waited: 0 when none waits, so that an alert on
    the value needs no special case for an absent series."""
    return 0.0 if accepted_at is None else max((now - accepted_at).total_seconds(), 0.0)


def _registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def metrics_view(request: HttpRequest) -> HttpResponse:
    registry = _registry()
    state = CollectorRegistry()
    state.register(StateCollector())
    body = generate_latest(registry) + generate_latest(state)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


class ApiLatencyMiddleware:
    """Times every request to the API by its route pattern (not its path: ids would explode
    the label set)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = match.route if match is not None else "unmatched"
        # "" is the UI's page (Django answers it only while the UI is not built): not the API.
        if route and not route.startswith(("admin", "static", "metrics")):
            API_LATENCY.labels(request.method, route, str(response.status_code)).observe(
                time.perf_counter() - started
            )
        return response


def observe_pipeline_run(seconds: float, messages: int) -> None:
    """Called by the pipeline at the end of each finished run, under its lease."""
    PIPELINE_RUN_SECONDS.observe(seconds)
    PIPELINE_MESSAGES.observe(messages)
    finished_at = timezone.now()
    PIPELINE_LAST_RUN.set(finished_at.timestamp())
    # Also in the dispatch cache: the admin reads it there, whichever host ran the pipeline.
    save_last_run(finished_at)
