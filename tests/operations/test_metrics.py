"""``/metrics``: every series is exposed and moves with what really happened (the API, a
send through moto's SES and the SendGrid stand-in, a pipeline run), parsed as Prometheus does."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from devtools.sendgrid_stub import SendGridStub, start_sendgrid_stub
from dispatch import health_store
from dispatch.health import HealthState
from dispatch.health_store import PendingBatch
from dispatch.pipeline import run_pipeline
from dispatch.providers.sendgrid import SendGridProvider
from dispatch.providers.ses import SesProvider
from dispatch.sending import send_batch
from gomail_site.aws import aws_client
from tests.dispatch.realparts import incoming_queue, put, receive_exactly, wire_email
from tests.operations.support import RecordingDispatcher, put_dead_letter

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(120)]

STUB_KEY = "SG.metrics-tests-key"
Samples = dict[tuple[str, frozenset], float]


@pytest.fixture(scope="module")
def sendgrid_stub() -> Iterator[SendGridStub]:
    with start_sendgrid_stub(port=0, api_key=STUB_KEY) as stub:
        yield stub


@pytest.fixture(autouse=True)
def short_backoff(gomail_config) -> None:
    gomail_config(pipeline={"backoff_base_seconds": 1, "backoff_max_seconds": 2})


def scrape() -> tuple[Samples, dict[str, str]]:
    """Every sample of ``/metrics`` keyed by (name, labels), and each family's type."""
    response = Client().get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    samples: Samples = {}
    types = {}
    for family in text_string_to_metric_families(response.content.decode()):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples, types


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every sample of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def test_accepted_counter_and_api_latency_move_with_the_api(aws, client_with_key):
    before, _ = scrape()

    response = client_with_key.post(
        "/email/send",
        {"email": {"fromEmail": "a@example.com", "toEmail": "b@example.org", "body": "hi"}},
        format="json",
    )
    invalid = client_with_key.post("/email/send", {"email": {}}, format="json")

    assert (response.status_code, invalid.status_code) == (200, 422)
    after, types = scrape()
    assert types["gomail_emails_accepted"] == "counter"
    assert value(after, "gomail_emails_accepted_total") == (
        value(before, "gomail_emails_accepted_total") + 1
    )
    assert types["gomail_api_request_seconds"] == "histogram"
    for status in ("200", "422"):
        labels = {"method": "POST", "route": "email/send", "status": status}
        assert value(after, "gomail_api_request_seconds_count", **labels) == (
            value(before, "gomail_api_request_seconds_count", **labels) + 1
        )
        assert value(after, "gomail_api_request_seconds_bucket", le="+Inf", **labels) >= 1
    # A route pattern, never a path with an id in it.
    routes = {dict(ls).get("route") for (n, ls) in after if n.startswith("gomail_api_request")}
    assert all(route and "-" not in route for route in routes), routes


def test_the_ui_page_and_the_admin_are_not_api_requests(client, settings, tmp_path):
    settings.WHITENOISE_ROOT = tmp_path  # no UI build: Django itself answers "/"
    before, _ = scrape()

    client.get("/")
    client.get("/admin/login/")

    after, _ = scrape()
    api = {key for key in after if key[0].startswith("gomail_api_request")}
    assert not {dict(labels)["route"] for _, labels in api - before.keys()}
    assert all(after[key] == before[key] for key in api & before.keys())


def test_status_route_is_labelled_by_its_pattern(aws, client_with_key):
    client_with_key.get(f"/email/{uuid.uuid4()}")

    after, _ = scrape()

    labels = {"method": "GET", "route": "email/<str:message_id>", "status": "404"}
    assert value(after, "gomail_api_request_seconds_count", **labels) >= 1


# transaction=True: send_batch delivers in threads, each with its own database connection.
@pytest.mark.django_db(transaction=True)
def test_send_counters_move_with_real_sends(aws, sendgrid_stub):
    ses = SesProvider(aws_client("ses", attempts=1))
    sendgrid = SendGridProvider(api_key=STUB_KEY, host=sendgrid_stub.url, timeout_seconds=0.5)
    sendgrid_stub.reset()
    good = wire_email()
    rejected = wire_email(from_email="someone@unverified.invalid")
    put(good.encode())
    put(rejected.encode())
    put("this is not a gomail message")
    before, _ = scrape()

    # SES in moto: one sent, one rejected (unverified sender: the message's fault, and SES
    # is the only provider), one undecodable.
    outcome = send_batch("ses", uuid.uuid4().hex, receive_exactly(3), providers={"ses": ses})
    assert (outcome.sent, outcome.permanent) == (1, 1)

    # The SendGrid stand-in answers too late: a timeout after submission, outcome unknown.
    sendgrid_stub.configure(delay_ms=2000)
    put(wire_email().encode())
    late = send_batch(
        "sendgrid", uuid.uuid4().hex, receive_exactly(1), providers={"sendgrid": sendgrid}
    )
    assert late.transient == 1

    after, types = scrape()

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("gomail_emails_sent_total", provider="ses") == 1
    assert moved("gomail_emails_failed_total", provider="ses", kind="permanent") == 1
    assert moved("gomail_emails_failed_total", provider="sendgrid", kind="transient") == 1
    assert moved("gomail_unknown_outcomes_total", provider="sendgrid") == 1
    assert moved("gomail_dead_lettered_total", cause="rejected") == 1
    assert moved("gomail_dead_lettered_total", cause="undecodable") == 1
    for family in (
        "gomail_emails_sent",
        "gomail_emails_failed",
        "gomail_unknown_outcomes",
        "gomail_dead_lettered",
    ):
        assert types[family] == "counter"


def test_pipeline_histograms_move_with_a_run(aws):
    for _ in range(3):
        put(wire_email().encode())
    before, _ = scrape()

    report = run_pipeline(RecordingDispatcher())

    after, types = scrape()
    assert report.read == 3
    assert types["gomail_pipeline_run_seconds"] == "histogram"
    assert types["gomail_pipeline_messages_per_run"] == "histogram"
    for name in ("gomail_pipeline_run_seconds_count", "gomail_pipeline_messages_per_run_count"):
        assert value(after, name) == value(before, name) + 1
    assert value(after, "gomail_pipeline_messages_per_run_sum") == (
        value(before, "gomail_pipeline_messages_per_run_sum") + 3
    )
    # 3 messages fall in the "10" bucket, not in the "1" bucket.
    assert value(after, "gomail_pipeline_messages_per_run_bucket", le="10.0") == (
        value(before, "gomail_pipeline_messages_per_run_bucket", le="10.0") + 1
    )
    assert value(after, "gomail_pipeline_messages_per_run_bucket", le="1.0") == value(
        before, "gomail_pipeline_messages_per_run_bucket", le="1.0"
    )


def test_state_gauges_read_at_scrape_time(aws):
    health_store.save_state("sendgrid", HealthState(healthy=False, consecutive_failures=3))
    health_store.save_pending(
        "ses",
        [
            PendingBatch("a", 4, "2026-01-01T00:00:00+00:00"),
            PendingBatch("b", 3, "2026-01-01T00:00:01+00:00"),
        ],
    )
    put(wire_email().encode(), incoming_queue(1))
    put(wire_email().encode(), incoming_queue(1))
    put_dead_letter(wire_email().encode())

    samples, types = scrape()

    for name in ("gomail_provider_healthy", "gomail_provider_in_flight", "gomail_queue_depth"):
        assert types[name] == "gauge"
    assert value(samples, "gomail_provider_healthy", provider="ses") == 1
    assert value(samples, "gomail_provider_healthy", provider="sendgrid") == 0
    assert value(samples, "gomail_provider_in_flight", provider="ses") == 7
    assert value(samples, "gomail_provider_in_flight", provider="sendgrid") == 0
    sqs = settings.GOMAIL.sqs
    depth = {
        (dict(ls)["queue"], dict(ls)["kind"]): v
        for (n, ls), v in samples.items()
        if n == "gomail_queue_depth"
    }
    assert depth == {
        (incoming_queue(0), "incoming"): 0,
        (incoming_queue(1), "incoming"): 2,
        (sqs.dead_letter_queue, "dead_letter"): 1,
    }


def test_every_unlabelled_series_and_gauge_is_exposed(aws, client_with_key):
    """After one of everything, each series the operators' dashboards use is in /metrics."""
    client_with_key.post(
        "/email/send",
        {"email": {"fromEmail": "a@example.com", "toEmail": "b@example.org", "body": "hi"}},
        format="json",
    )
    run_pipeline(RecordingDispatcher())

    samples, _ = scrape()

    names = {name for name, _ in samples}
    expected = {
        "gomail_emails_accepted_total",
        "gomail_pipeline_run_seconds_bucket",
        "gomail_pipeline_messages_per_run_bucket",
        "gomail_api_request_seconds_bucket",
        "gomail_provider_healthy",
        "gomail_provider_in_flight",
        "gomail_queue_depth",
    }
    assert expected <= names, expected - names
    assert total(samples, "gomail_emails_accepted_total") >= 1
    # The labelled counters (sent, failed, unknown outcomes, dead-lettered) have no sample
    # before their first event: test_send_counters_move_with_real_sends makes each happen.
