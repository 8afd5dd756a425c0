"""Celery's configuration, derived from the Gomail configuration (``gomail_site.config``).

Broker: SQS through kombu's SQS transport, at the configured AWS endpoint (moto locally).
Queues: ``pipeline`` and one per provider, declared here; nothing is routed implicitly.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from celery.schedules import crontab
from kombu import Queue

from gomail_site.config import PIPELINE_QUEUE, get_config

_config = get_config()


def _broker_url() -> tuple[str, bool]:
    # kombu builds the SQS endpoint from the URL's host and port; sqs:// alone means AWS.
    if _config.aws.endpoint_url is None:
        return "sqs://", True
    endpoint = urlsplit(str(_config.aws.endpoint_url))
    port = f":{endpoint.port}" if endpoint.port else ""
    return f"sqs://{endpoint.hostname}{port}", endpoint.scheme == "https"


broker_url, _is_secure = _broker_url()
broker_connection_retry_on_startup = True
broker_transport_options = {
    "region": _config.aws.region,
    "is_secure": _is_secure,
    "queue_name_prefix": _config.celery.queue_name_prefix,
    "visibility_timeout": _config.celery.visibility_timeout_seconds,
    "wait_time_seconds": _config.celery.wait_time_seconds,
    "polling_interval": _config.celery.polling_interval_seconds,
    # Task messages are JSON text already; a second base64 layer would cost a third of the
    # 256 KiB SQS limit.
    "sqs_base64_encoding": False,
}
if _config.celery.queue_urls:
    broker_transport_options["predefined_queues"] = {
        name: {"url": str(url)} for name, url in _config.celery.queue_urls.items()
    }

# Each queue bound by its own name, so nothing published to one can reach another.
task_queues = [Queue(name, routing_key=name) for name in _config.celery_queues]
task_default_queue = PIPELINE_QUEUE
task_create_missing_queues = False
task_routes = {"dispatch.tasks.run_pipeline": {"queue": PIPELINE_QUEUE}}

# UTF-8 JSON (registered in gomail_site.celery); plain "json" still read, e.g. from beat.
task_serializer = "gomail-json"
accept_content = ["gomail-json", "json"]
result_backend = None
task_ignore_result = True

# At-least-once: a task is acknowledged after it ran, and a worker that dies mid-task leaves
# it to come back after the visibility timeout instead of losing it.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
worker_hijack_root_logger = False
worker_send_task_events = False
task_send_sent_event = False

# The dispatch cache's expired rows (late batch outcomes) are deleted this often: without it,
# DatabaseCache deletes them only once MAX_ENTRIES is passed.
DISPATCH_CACHE_PURGE_SECONDS = 600.0
# Far above any clock skew between beat and a worker (NTP keeps them within a second; a VM
# resumed from a pause can be minutes off).
PIPELINE_EXPIRY_FLOOR_SECONDS = 300.0
# SQS moves a message only after sqs.max_receive_count receives (hours of retries): a few
# minutes until its record says dead is soon enough.
DEAD_LETTER_RECONCILE_SECONDS = 300.0


def pipeline_task_expiry(interval_seconds: float, lease_seconds: float) -> float:
    """Seconds a pipeline task from beat stays worth running (its ``expires``).

    The worker compares ``expires`` with its own clock, so an expiry of one interval made a
    worker a few seconds off drop every run. Overlap is the lease's job (dispatch/lease.py),
    not the expiry's: a late run is harmless, it only reads what is there. The expiry only
    stops a worker that was down from working through hours of queued runs: at least the
    floor, the lease, and two intervals (so a long interval's run is never dropped before the
    next is due).
    """
    return max(PIPELINE_EXPIRY_FLOOR_SECONDS, float(lease_seconds), 2 * interval_seconds)


beat_schedule = {
    "pipeline": {
        "task": "dispatch.tasks.run_pipeline",
        "schedule": _config.pipeline.interval_milliseconds / 1000,
        "options": {
            "expires": pipeline_task_expiry(
                _config.pipeline.interval_milliseconds / 1000, _config.pipeline.lease_seconds
            )
        },
    },
    # Maintenance, on the pipeline's queue (the one worker that is not a provider's). No
    # expiry: a late run does the same work, and neither is time-critical.
    "purge-dispatch-cache": {
        "task": "dispatch.tasks.purge_dispatch_cache",
        "schedule": DISPATCH_CACHE_PURGE_SECONDS,
    },
    "cleanup-emails": {
        "task": "dispatch.tasks.cleanup_emails",
        # Daily, at a quiet hour (UTC): pipeline runs wait behind it while it deletes.
        "schedule": crontab(hour=3, minute=17),
    },
    # Claim checks no email can need any more (emails/claim_check.py); hourly, so that a
    # failed delete after a send costs a bucket an hour, not a day.
    "cleanup-payloads": {
        "task": "dispatch.tasks.cleanup_payloads",
        "schedule": crontab(minute=41),
    },
    # Records of the messages SQS moved to the dead-letter queue by itself (no reason) are
    # marked dead; a bounded look at the queue that hides nothing (dispatch/dead_letters.py).
    # And the waiting records older than the incoming queues' retention (no message left).
    "reconcile-dead-letters": {
        "task": "dispatch.tasks.reconcile_dead_letters",
        "schedule": DEAD_LETTER_RECONCILE_SECONDS,
    },
}
timezone = "UTC"
