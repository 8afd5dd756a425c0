"""Three providers (issue 14): SES (moto), SendGrid (its stand-in) and SMTP (the aiosmtpd
stand-in, ``python -m devtools.smtp_stub``) on a stack of this module's own
(``running_stack(smtp=True)``: the smtp provider enabled on the stand-in, the provider worker on
``-Q ses,sendgrid,smtp``). The ledger counts the SMTP stand-in's copies (by ``X-Gomail-Id``)
like SES's and SendGrid's, and the rows join the system table.

Timings: those of ``test_faults`` (``stack.SYSTEM_OVERRIDES``) with 160 s visibility timeouts
and a 2 s SMTP timeout (``stack.THREE_PROVIDER_OVERRIDES``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from dispatch import health_store
from emails.models import Attempt, Email
from tests.system.conftest import Scenario, running_stack
from tests.system.faults import THROTTLE
from tests.system.stack import Stack

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]

PROVIDERS = ("ses", "sendgrid", "smtp")
EMAILS = 30
# How far each provider's share of an even split may be from EMAILS / 3: the split is per
# batch (largest remainder, the order rotated between pipeline runs), and batches vary.
SPLIT_TOLERANCE = 4
DRAIN_TIMEOUT = 90


@pytest.fixture(scope="module")
def stack(
    django_db_setup: None,
    django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """The whole service with the SMTP stand-in as its third provider, for this module."""
    with running_stack(django_db_blocker, tmp_path_factory, smtp=True) as running:
        yield running


def record_providers(ids: list[str]) -> Counter[str]:
    """How many of the records of ``ids`` name each provider."""
    rows = Email.objects.filter(id__in=ids).values_list("provider", flat=True)
    return Counter(rows)


@pytest.mark.timeout(90)
def test_three_providers_split_evenly(scenario: Scenario) -> None:
    stack = scenario.stack
    assert stack.smtp is not None
    ingest = stack.send(scenario.key, EMAILS)
    assert not ingest.refused, ingest.refused[:3]
    drain = scenario.wait_drained(ingest.accepted, 60)
    by_record = record_providers(ingest.accepted)
    taken = scenario.check(
        ingest.accepted,
        drain,
        note="no fault, 3 providers: "
        + ", ".join(f"{name} {by_record[name]}" for name in PROVIDERS),
    )
    # Each took about a third, by its records and at the provider itself.
    for name in PROVIDERS:
        assert abs(by_record[name] - EMAILS / 3) <= SPLIT_TOLERANCE, (by_record, taken.summary())
        assert taken.delivered_by(name) == by_record[name], (name, taken.summary())
    assert sum(by_record.values()) == EMAILS, by_record


@pytest.mark.timeout(150)
def test_two_of_three_failing(scenario: Scenario) -> None:
    """SendGrid answers 500 and SES throttles while the emails go in: both turn unhealthy and
    SMTP sends everything; nothing is lost. Then the faults are healed."""
    stack = scenario.stack
    assert stack.smtp is not None
    stack.stub.configure(failRate=1, failStatus=500)
    stack.aws_fault("ses", THROTTLE)
    ingest = stack.send(scenario.key, EMAILS)
    assert not ingest.refused, ingest.refused[:3]
    # Drained during the fault: counted from the last email accepted.
    drain = scenario.wait_drained(ingest.accepted, DRAIN_TIMEOUT)
    health = {name: health_store.load_state(name) for name in PROVIDERS}
    failures = Counter(
        Attempt.objects.filter(email_id__in=ingest.accepted)
        .exclude(outcome="sent")
        .values_list("provider", flat=True)
    )
    throttled = stack.aws_count("ses", THROTTLE)
    scenario.heal()
    taken = scenario.check(
        ingest.accepted,
        drain,
        note=f"SendGrid 500 and SES throttled throughout ({failures['sendgrid']} and "
        f"{failures['ses']} failed sends): every email via SMTP; drain counted from the last "
        "accepted email, during the fault",
    )
    assert taken.delivered_by("smtp") == EMAILS, taken.summary()
    assert record_providers(ingest.accepted) == Counter({"smtp": EMAILS})
    # Both were really in the way and their failing batches were folded into their health
    # (how many before SMTP had sent everything depends on the workers' breakers: a batch
    # held back untried says nothing); SMTP stayed healthy.
    assert failures["ses"] >= 3 and failures["sendgrid"] >= 3, failures
    assert throttled >= 3, throttled
    for name in ("ses", "sendgrid"):
        assert not health[name].healthy or health[name].consecutive_failures >= 1, health[name]
    assert health["smtp"].healthy, health["smtp"]
    assert not failures["smtp"], failures
