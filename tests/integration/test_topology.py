"""The pipeline as production runs it: its lease really excludes concurrent runs, and the full
Procfile topology (beat, pipeline worker, provider worker) delivers an email on its own
(DESIGN.md sections 2, 5.7, 7, 11).

Each test has its own Celery queue prefix, so its processes share no queue with any other.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path
from typing import Any

import pytest

from devtools.moto_server import MotoServer
from devtools.sendgrid_stub import SendGridStub
from emails.models import Attempt, Email
from tests import harness
from tests.harness.fixtures import GroupFactory

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]


def test_concurrent_pipeline_runs_never_overlap(
    processes: GroupFactory,
    clean_slate: None,
    client_with_key: Any,
    sendgrid_stub: SendGridStub,
    integration_aws: MotoServer,
    tmp_path: Path,
) -> None:
    prefix = f"gomail-it-lease-{os.getpid()}-"
    group = processes("lease", prefix=prefix)
    group.worker("providers", ["ses", "sendgrid"], concurrency=2)
    ids = harness.send_through_api(client_with_key, 40)

    # Three processes call run_pipeline in a tight loop for 8 s; each run holds the lease 50 ms
    # longer than it needs, so they keep colliding.
    probes = harness.run_probes(group.env, tmp_path, 3, seconds=8, hold_ms=50)

    runs = sorted(run for probe in probes for run in probe.runs)
    overlaps = [(a, b) for a, b in itertools.pairwise(runs) if b[0] < a[1]]
    assert not overlaps, overlaps
    skipped = sum(probe.skipped for probe in probes)
    assert len(runs) >= 10 and skipped >= 50, (len(runs), skipped)
    # The lease went from process to process (not fair, so not necessarily to all three).
    assert sum(1 for probe in probes if probe.runs) >= 2, [len(p.runs) for p in probes]
    # Nothing read twice, but for a message a failed send handed back (on a loaded machine a
    # call can time out) to be read again.
    read = sum(probe.read for probe in probes)
    handed_back = Attempt.objects.filter(email_id__in=ids).exclude(outcome="sent").count()
    assert read == len(ids) or (read > len(ids) and handed_back), (read, handed_back)

    celery_queues = harness.celery_queue_names(prefix)
    harness.wait_for(lambda: harness.settled(ids, celery_queues), 60, "the emails to settle")
    harness.take_ledger(ids, sendgrid_stub, integration_aws.url).assert_each_sent_once()
    gaps = [(b[0] - a[1]) / 1e6 for a, b in itertools.pairwise(runs)]
    print(
        f"lease: {len(runs)} runs by {len(probes)} processes "
        f"({[len(probe.runs) for probe in probes]}), {skipped} attempts refused; smallest gap "
        f"between two runs {min(gaps):.2f} ms"
    )


def test_production_topology_sends_an_api_email_within_seconds(
    processes: GroupFactory,
    clean_slate: None,
    client_with_key: Any,
    sendgrid_stub: SendGridStub,
    integration_aws: MotoServer,
) -> None:
    group = processes(
        "topology",
        prefix=f"gomail-it-topology-{os.getpid()}-",
        overrides={"pipeline": {"interval_milliseconds": 1000}},
    )
    # As the Procfile runs them (its concurrencies), started together.
    pipeline = group.worker("pipeline", ["pipeline"], concurrency=1, wait=False)
    group.worker("providers", ["ses", "sendgrid"], concurrency=4, wait=False)
    group.beat(wait=False)
    group.wait_ready()

    started = time.monotonic()
    ids = harness.send_through_api(client_with_key, 4)
    harness.wait_for(
        lambda: harness.records_final(ids), 15, "the emails to be sent by the processes alone"
    )
    elapsed = time.monotonic() - started

    ledger = harness.take_ledger(ids, sendgrid_stub, integration_aws.url)
    ledger.assert_each_sent_once()
    for email_id in ids:
        answer = client_with_key.get(f"/email/{email_id}").json()
        assert answer["status"] == "sent" and answer["provider"] in ("ses", "sendgrid"), answer
    assert Email.objects.filter(id__in=ids, status=Email.Status.SENT).count() == len(ids)
    assert "pipeline run: read" in pipeline.log_text()
    print(
        f"topology: {len(ids)} emails sent {elapsed:.1f}s after the API accepted them; "
        f"start-up {[round(p.ready_seconds or 0, 1) for p in group.processes]} s"
    )
