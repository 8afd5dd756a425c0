"""Celery's configuration, derived from the Gomail configuration (``gomail_site.config``).

Broker: SQS through kombu's SQS transport, at the configured AWS endpoint (moto locally).
Queues: ``pipeline`` and one per provider, declared here; nothing is routed implicitly.
"""

from __future__ import annotations

from urllib.parse import urlsplit

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

beat_schedule = {
    "pipeline": {
        "task": "dispatch.tasks.run_pipeline",
        "schedule": _config.pipeline.interval_milliseconds / 1000,
        # A run that waited longer than an interval is stale: the next one is already due.
        "options": {"expires": max(_config.pipeline.interval_milliseconds / 1000, 1.0)},
    }
}
timezone = "UTC"
