"""The one process harness of the suite: every test that runs the service's real processes,
its stand-ins or the pipeline uses it (``from tests import harness``).

- ``processes``: start/stop any Procfile process (gunicorn, the pipeline and provider workers,
  beat, moto, the SendGrid and SMTP stand-ins) on the port it picks itself, in its own
  process group, with its log; ``run_checked`` for one-shot commands.
- ``environment``: the environment and configuration overrides of those processes.
- ``queues``: the test's view of SQS (counts, purges, dead letters) and of moto's SES.
- ``emails``: test emails in through the API or straight onto a queue.
- ``pipeline``: the pipeline driven from the test (a loop, or a beat-like thread).
- ``ledger``: where each email went, counted at the providers.
- ``probe`` and ``together``: pipelines, or any code, in separate processes started together.
- ``waiting``: ``wait_for``, the one polling helper, and ``wait_steady`` for a state still moving.
- ``fixtures``: the pytest fixtures over all of it (a plugin of the root conftest).
"""

from tests.harness.emails import (
    SENDER,
    email_fields,
    enqueue_from_another_producer,
    new_subject,
    send_through_api,
)
from tests.harness.environment import (
    FAST_TIMINGS,
    child_environment,
    config_env,
    database_environment,
    merge,
    service_environment,
    with_overrides,
)
from tests.harness.ledger import Ledger, take_ledger
from tests.harness.pipeline import (
    PipelineLoop,
    PipelineRun,
    drive_pipeline,
    health_states,
    records_final,
    run_pipeline_once,
    settled,
)
from tests.harness.probe import ProbeResult, run_probes
from tests.harness.processes import (
    REPO_ROOT,
    ProcessFailed,
    ProcessGroup,
    ServiceProcess,
    run_checked,
    smtp_address,
    wait_healthy,
)
from tests.harness.queues import (
    DeadLetter,
    celery_queue_names,
    dead_letter_queue,
    dead_letters,
    enqueue_raw,
    incoming_queues,
    purge_queues,
    queue_counts,
    queues_empty,
    ses_messages,
)
from tests.harness.waiting import wait_for, wait_steady

__all__ = [
    "FAST_TIMINGS",
    "REPO_ROOT",
    "SENDER",
    "DeadLetter",
    "Ledger",
    "PipelineLoop",
    "PipelineRun",
    "ProbeResult",
    "ProcessFailed",
    "ProcessGroup",
    "ServiceProcess",
    "celery_queue_names",
    "child_environment",
    "config_env",
    "database_environment",
    "dead_letter_queue",
    "dead_letters",
    "drive_pipeline",
    "email_fields",
    "enqueue_from_another_producer",
    "enqueue_raw",
    "health_states",
    "incoming_queues",
    "merge",
    "new_subject",
    "purge_queues",
    "queue_counts",
    "queues_empty",
    "records_final",
    "run_checked",
    "run_pipeline_once",
    "run_probes",
    "send_through_api",
    "service_environment",
    "ses_messages",
    "settled",
    "smtp_address",
    "take_ledger",
    "wait_for",
    "wait_healthy",
    "wait_steady",
    "with_overrides",
]
