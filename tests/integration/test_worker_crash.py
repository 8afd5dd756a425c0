"""A provider worker SIGKILLed in the middle of a batch (DESIGN.md sections 7, 8, 9.2-9.3).

Nothing is acknowledged when the whole worker dies at once: its incoming messages come back
when their visibility timeout ends and are sent by the replacement worker; its Celery task
comes back after Celery's own visibility timeout and must not send anything twice. The only
duplicates allowed are the sends that were in flight at the kill (the stand-in still delivers
them: their outcome was unknown), and each must be counted on its record.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from devtools.moto_server import MotoServer
from devtools.sendgrid_stub import SendGridStub
from emails.models import Email
from tests import harness
from tests.harness.fixtures import GroupFactory, default_prefix

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]

EMAILS = 20
SLOW_SEND_MS = 4_000


def test_a_provider_worker_killed_mid_batch_loses_nothing(
    processes: GroupFactory,
    clean_slate: None,
    gomail_overrides: Any,
    client_with_key: Any,
    sendgrid_stub: SendGridStub,
    integration_aws: MotoServer,
) -> None:
    group = processes("crash")
    doomed = group.worker("doomed", ["ses", "sendgrid"], concurrency=2)
    sendgrid_stub.configure(delay_ms=SLOW_SEND_MS)
    ids = harness.send_through_api(client_with_key, EMAILS)
    read_at = timezone.now()
    runs = harness.drive_pipeline(
        lambda: sum(run.report.read for run in runs) >= EMAILS, 15, runs=(runs := [])
    )

    # Mid-batch: SendGrid's batch has claimed its emails and its requests are at the stand-in,
    # which answers only after SLOW_SEND_MS. (SES's batch is done by then.)
    harness.wait_for(
        lambda: Email.objects.filter(id__in=ids, status=Email.Status.SENDING).exists(),
        15,
        "a batch to start sending",
    )
    time.sleep(1.0)
    in_flight = {
        str(i)
        for i in Email.objects.filter(id__in=ids, status=Email.Status.SENDING).values_list(
            "id", flat=True
        )
    }
    assert in_flight, "nothing was being sent at the kill"
    assert len(doomed.pool_pids()) == 2
    killed = time.monotonic()
    killed_at = timezone.now()
    doomed.kill()
    assert not doomed.alive and not doomed.pool_pids()
    interrupted_tasks = doomed.tasks("received") - doomed.tasks("succeeded")
    assert interrupted_tasks, doomed.tail()

    sendgrid_stub.configure(delay_ms=0)
    replacement = group.worker("replacement", ["ses", "sendgrid"], concurrency=2)
    celery_queues = harness.celery_queue_names(default_prefix())
    # Settled includes the Celery queues: the killed worker's task came back and was run too.
    runs += harness.drive_pipeline(lambda: harness.settled(ids, celery_queues), 180, pause=1.0)
    settled_after = time.monotonic() - killed
    # acks_late: the killed worker's task came back (Celery's visibility timeout) and ran.
    assert interrupted_tasks <= replacement.tasks("succeeded"), replacement.tail()

    ledger = harness.take_ledger(ids, sendgrid_stub, integration_aws.url)
    assert ledger.status_counts == {"sent": EMAILS}, ledger.summary()
    assert not ledger.undelivered and not ledger.dead, ledger.summary()
    # A duplicate only where the send's outcome was unknown (in flight at the kill), at most
    # one extra copy each, and every such email says so on its record.
    assert set(ledger.duplicates) <= in_flight, (ledger.duplicates, in_flight)
    assert all(extra == 1 for extra in ledger.duplicates.values()), ledger.duplicates
    assert all(ledger.unknown_outcomes[i] >= 1 for i in in_flight), ledger.unknown_outcomes
    assert not any(ledger.unknown_outcomes[i] for i in set(ids) - in_flight)
    # The interrupted emails were not read again before their visibility timeout ended.
    visibility = timedelta(seconds=settings.GOMAIL.sqs.visibility_timeout_seconds)
    interrupted = Email.objects.filter(id__in=in_flight)
    for email in interrupted:
        assert email.sent_at >= read_at + visibility - timedelta(seconds=1), email
        assert email.attempts >= 2
    resent_after = max(email.sent_at for email in interrupted) - killed_at
    print(
        f"kill: {len(in_flight)} emails in flight at the kill, all sent again "
        f"{resent_after.total_seconds():.1f}s after it; everything settled (the killed task "
        f"redelivered and run) {settled_after:.1f}s after it, {len(runs)} pipeline runs; "
        f"duplicates {len(ledger.duplicates)} (all of unknown outcome); {ledger.summary()}"
    )
