"""``Idempotency-Key`` on ``POST /email/send`` (emails/idempotency.py).

The decisions are tested as pure functions; the API through DRF's client against the real
test database and moto's SQS (a retry, a conflicting reuse, another caller, a duplicate in
progress, an expired key, a 503, the ambiguous 503 of docs/reliability.md); and the last test
sends concurrent duplicates to two real gunicorn processes sharing the test database.
"""

from __future__ import annotations

import io
import json
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import OperationalError, connection
from django.utils import timezone
from rest_framework.test import APIClient

from emails import accepting, idempotency
from emails.errors import ApiError
from emails.idempotency import Policy, Seen, Verdict, judge, judge_stale, parse_key
from emails.models import ApiKey, Email, IdempotencyKey
from emails.queueing import QueueUnavailable
from gomail_site.aws import aws_client
from tests.clients import VALID_EMAIL, keyed
from tests.dispatch.realparts import wire_email
from tests.emails.test_send_api import drain
from tests.harness import ProcessGroup, child_environment

# --- the header ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (None, None),
        ("abc", "abc"),
        ('"abc"', "abc"),
        ("order 42: retry", "order 42: retry"),
        ('"a\\"b"', 'a"b'),
        ('"a\\\\b"', "a\\b"),
        ("x" * 255, "x" * 255),
        ('"' + "x" * 255 + '"', "x" * 255),
        ("~!#$%&'()*+,-./", "~!#$%&'()*+,-./"),
    ],
)
def test_a_key_is_read_bare_or_as_a_structured_field_string(raw, key):
    assert parse_key(raw) == key


@pytest.mark.parametrize(
    "raw",
    ["", '""', "x" * 256, '"' + "x" * 256 + '"', "caf\u00e9", "a\tb", '"abc', '"a"b', '"a\\nb"'],
    ids=[
        "empty",
        "empty-quoted",
        "too-long",
        "too-long-quoted",
        "not-ascii",
        "control",
        "unclosed",
        "after-the-quote",
        "bad-escape",
    ],
)
def test_an_invalid_key_is_a_400(raw):
    with pytest.raises(ApiError) as raised:
        parse_key(raw)

    assert raised.value.status_code == 400
    assert raised.value.detail == idempotency.INVALID_KEY


def test_the_fingerprint_ignores_key_order_and_spacing_only():
    one = idempotency.fingerprint({"email": {"toEmail": "b@example.org", "body": "x"}})

    assert one == idempotency.fingerprint(
        json.loads('{"email":{"body":"x","toEmail":"b@example.org"}}')
    )
    assert one != idempotency.fingerprint({"email": {"toEmail": "b@example.org", "body": "y"}})
    assert len(one) == 64


def test_the_owner_is_the_api_key_then_the_user_then_anonymous():
    key, user = mock.Mock(pk=7), mock.Mock(pk=3)

    assert idempotency.owner_of(key, user) == "key:7"
    assert idempotency.owner_of(None, user) == "user:3"
    assert idempotency.owner_of(None, None) == "anonymous"


# --- the decisions -------------------------------------------------------------------------------

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
POLICY = Policy(retention=timedelta(hours=24), in_progress=timedelta(seconds=61))
SAME, OTHER = "f" * 64, "0" * 64


def seen(age: timedelta, *, completed: bool, fingerprint: str = SAME) -> Seen:
    created = NOW - age
    return Seen(fingerprint, created, created + timedelta(seconds=1) if completed else None)


@pytest.mark.parametrize(
    ("row", "fingerprint", "verdict"),
    [
        (seen(timedelta(minutes=5), completed=True), SAME, Verdict.REPLAY),
        (seen(timedelta(minutes=5), completed=True), OTHER, Verdict.DIFFERENT_REQUEST),
        (seen(timedelta(seconds=1), completed=False), SAME, Verdict.IN_PROGRESS),
        (seen(timedelta(seconds=60), completed=False), SAME, Verdict.IN_PROGRESS),
        # A different request is refused even while the first is in progress.
        (seen(timedelta(seconds=1), completed=False), OTHER, Verdict.DIFFERENT_REQUEST),
        (seen(timedelta(seconds=61), completed=False), SAME, Verdict.LOOK_AT_RECORD),
        (seen(timedelta(hours=23), completed=False), OTHER, Verdict.DIFFERENT_REQUEST),
        # Past the retention the key is free, whatever the request.
        (seen(timedelta(hours=24), completed=True), SAME, Verdict.TAKE_OVER),
        (seen(timedelta(hours=25), completed=True), OTHER, Verdict.TAKE_OVER),
        (seen(timedelta(hours=25), completed=False), SAME, Verdict.TAKE_OVER),
    ],
)
def test_judge(row, fingerprint, verdict):
    assert judge(row, fingerprint, NOW, POLICY) is verdict


def test_a_retention_shorter_than_a_request_never_expires_one_in_progress():
    short = Policy(retention=timedelta(seconds=10), in_progress=timedelta(seconds=61))

    assert judge(seen(timedelta(seconds=30), completed=False), SAME, NOW, short) is (
        Verdict.IN_PROGRESS
    )
    assert judge(seen(timedelta(seconds=61), completed=False), SAME, NOW, short) is (
        Verdict.TAKE_OVER
    )


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (None, Verdict.TAKE_OVER),
        (Email.Status.WITHDRAWN, Verdict.TAKE_OVER),
        (Email.Status.QUEUED, Verdict.WITHDRAW),
        *(
            (status, Verdict.REPLAY)
            for status in Email.Status
            if status not in ("withdrawn", "queued")
        ),
    ],
)
def test_a_stale_row_is_answered_by_a_record_that_may_be_delivered(status, verdict):
    assert judge_stale(status) is verdict


def test_the_in_progress_window_outlasts_the_apis_wait_for_sqs(gomail_config):
    # enqueue waits client_timeout_seconds * 2 per attempt, 3 attempts, and a second.
    gomail_config(aws={"client_timeout_seconds": 10})

    assert idempotency.in_progress_window() > timedelta(seconds=10 * 2 * 3 + 1)


# --- through the API -----------------------------------------------------------------------------

OTHER_EMAIL = {**VALID_EMAIL, "subject": "Another subject"}


def send(client: APIClient, key: str | None, email: dict[str, Any] = VALID_EMAIL) -> Any:
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(
        "/email/send", data=json.dumps({"email": email}), content_type="application/json", **headers
    )


def message_id(response: Any) -> str:
    assert response.status_code == 200, response.content
    return response.json()["messageId"]


def assert_error(response: Any, status: int, message: str) -> None:
    assert response.status_code == status, response.content
    assert response.json() == {"errors": {"base": message}}


def row_of(key: str) -> IdempotencyKey:
    return IdempotencyKey.objects.get(key=key)


def age(key: str, by: timedelta) -> None:
    IdempotencyKey.objects.filter(key=key).update(created_at=timezone.now() - by)


def stale() -> timedelta:
    """Older than any request in progress can be."""
    return idempotency.in_progress_window() + timedelta(seconds=1)


@pytest.mark.django_db
def test_a_retry_answers_the_first_id_and_queues_nothing_again(client_with_key, aws):
    first = message_id(send(client_with_key, "order-1"))

    assert message_id(send(client_with_key, "order-1")) == first
    assert message_id(send(client_with_key, '"order-1"')) == first  # the same key, quoted
    assert [message["id"] for message in drain(aws)] == [first]
    assert list(Email.objects.values_list("id", flat=True)) == [uuid.UUID(first)]
    row = row_of("order-1")
    assert str(row.email_id) == first and row.completed_at is not None


@pytest.mark.django_db
def test_the_same_key_with_another_request_is_a_422_and_queues_nothing(client_with_key, aws):
    first = message_id(send(client_with_key, "order-2"))

    response = send(client_with_key, "order-2", OTHER_EMAIL)

    assert_error(response, 422, "Idempotency-Key reused with a different request")
    assert [message["id"] for message in drain(aws)] == [first]
    assert Email.objects.count() == 1


@pytest.mark.django_db
def test_another_callers_same_key_is_its_own(client_with_key, aws):
    other = keyed(ApiKey.create_key("another client")[1])

    mine = message_id(send(client_with_key, "shared-name"))
    theirs = message_id(send(other, "shared-name", OTHER_EMAIL))

    assert mine != theirs
    assert sorted(message["id"] for message in drain(aws)) == sorted([mine, theirs])
    assert IdempotencyKey.objects.filter(key="shared-name").count() == 2


@pytest.mark.django_db
def test_no_key_means_no_row_and_a_new_email_each_time(client_with_key, aws):
    ids = {message_id(send(client_with_key, None)) for _ in range(2)}

    assert len(ids) == 2
    assert not IdempotencyKey.objects.exists()


@pytest.mark.django_db
def test_an_invalid_key_is_a_400_and_nothing_is_queued(client_with_key, aws):
    assert_error(send(client_with_key, "x" * 256), 400, idempotency.INVALID_KEY)
    assert_error(send(client_with_key, ""), 400, idempotency.INVALID_KEY)

    assert drain(aws) == []
    assert not IdempotencyKey.objects.exists()


@pytest.mark.django_db
def test_an_invalid_request_does_not_reserve_its_key(client_with_key, aws):
    response = send(client_with_key, "order-3", {"fromEmail": "not an address"})

    assert response.status_code == 422
    assert not IdempotencyKey.objects.exists()
    first = message_id(send(client_with_key, "order-3"))
    assert [message["id"] for message in drain(aws)] == [first]


@pytest.mark.django_db
def test_an_expired_key_is_accepted_anew(client_with_key, aws, gomail_config):
    gomail_config(api={"idempotency_retention_hours": 1})
    first = message_id(send(client_with_key, "order-4"))
    age("order-4", timedelta(hours=1, seconds=1))

    second = message_id(send(client_with_key, "order-4", OTHER_EMAIL))

    assert second != first
    assert sorted(message["id"] for message in drain(aws)) == sorted([first, second])
    assert str(row_of("order-4").email_id) == second
    assert message_id(send(client_with_key, "order-4", OTHER_EMAIL)) == second


@pytest.mark.django_db
def test_the_daily_cleanup_forgets_expired_keys_only(client_with_key, aws, gomail_config):
    gomail_config(api={"idempotency_retention_hours": 2})
    for key in ("old", "young"):
        message_id(send(client_with_key, key))
    age("old", timedelta(hours=3))
    age("young", timedelta(hours=1))

    out = io.StringIO()
    call_command("cleanup_emails", stdout=out)

    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["young"]
    assert "deleted 1 expired Idempotency-Key(s)" in out.getvalue()


def sqs_down() -> Any:
    return mock.patch.object(accepting, "enqueue", side_effect=QueueUnavailable("SQS is down"))


@pytest.mark.django_db
def test_a_503_releases_the_key_for_a_retry(client_with_key, aws):
    with sqs_down():
        assert_error(send(client_with_key, "order-5"), 503, "Service unavailable")

    assert not IdempotencyKey.objects.exists()
    [withdrawn] = Email.objects.all()
    assert withdrawn.status == Email.Status.WITHDRAWN
    accepted = message_id(send(client_with_key, "order-5"))
    assert accepted != str(withdrawn.id)
    assert [message["id"] for message in drain(aws)] == [accepted]


@pytest.mark.django_db
def test_a_message_too_large_releases_the_key(client_with_key, aws):
    too_large = mock.patch.object(
        accepting, "checked_size", side_effect=accepting.MessageTooLarge("too large")
    )
    with too_large:
        assert_error(send(client_with_key, "order-6"), 400, "Body is too large to queue")

    assert not IdempotencyKey.objects.exists()


@pytest.mark.django_db
def test_the_ambiguous_503_is_withdrawn_by_a_retry_once_stale_and_sent_anew(client_with_key, aws):
    # docs/reliability.md: SQS failed, then the database failed before the withdrawal. The
    # record stays queued (SQS may hold the message), so the key is not released. A retry
    # past the window withdraws it (a copy SQS kept is then dropped by its worker) and is
    # accepted anew: one email is delivered, never two, never none.
    withdraw_fails = mock.patch.object(
        accepting.records, "withdraw", side_effect=OperationalError("database gone")
    )
    with sqs_down(), withdraw_fails:
        assert_error(send(client_with_key, "order-7"), 503, "Service unavailable")
    [record] = Email.objects.all()
    assert record.status == Email.Status.QUEUED
    assert row_of("order-7").completed_at is None

    in_window = send(client_with_key, "order-7")
    age("order-7", stale())
    retried = send(client_with_key, "order-7")

    assert_error(in_window, 409, idempotency.IN_PROGRESS)
    assert message_id(retried) != str(record.id)
    record.refresh_from_db()
    assert record.status == Email.Status.WITHDRAWN
    assert row_of("order-7").completed_at is not None
    assert [message["id"] for message in drain(aws)] == [message_id(retried)]


@pytest.mark.django_db
def test_a_stale_row_whose_queued_record_a_worker_claimed_is_replayed(
    client_with_key, aws, api_key
):
    claimed_id = uuid.uuid4()
    Email.objects.create(
        id=claimed_id, from_email="a@example.com", to_email="b@example.org", status="sending"
    )
    IdempotencyKey.objects.create(
        owner=f"key:{api_key[0].pk}",
        key="order-10",
        fingerprint=idempotency.fingerprint({"email": VALID_EMAIL}),
        email_id=claimed_id,
        created_at=timezone.now() - stale(),
    )

    assert message_id(send(client_with_key, "order-10")) == str(claimed_id)
    assert drain(aws) == []


def test_a_request_whose_key_was_taken_over_while_slow_records_nothing(db):
    IdempotencyKey.objects.create(
        owner="anonymous", key="slow", fingerprint=SAME, email_id=(mine := uuid.uuid4())
    )
    slow = idempotency.Reservation(str(mine), row_id=row_of("slow").pk)
    assert idempotency._take_over(row_of("slow"), SAME, uuid.uuid4())  # a retry, meanwhile

    assert not slow.confirm()


def test_a_heartbeat_keeps_the_key_from_a_retry_that_read_the_row_before(db):
    IdempotencyKey.objects.create(
        owner="anonymous", key="alive", fingerprint=SAME, email_id=(mine := uuid.uuid4())
    )
    read_by_retry = row_of("alive")
    alive = idempotency.Reservation(str(mine), row_id=read_by_retry.pk)

    assert alive.confirm()
    assert not idempotency._take_over(read_by_retry, SAME, uuid.uuid4())
    assert row_of("alive").email_id == mine


@pytest.mark.django_db
def test_accept_refused_by_its_reservation_records_and_queues_nothing(aws):
    with pytest.raises(accepting.NotAccepted):
        accepting.accept(wire_email(body="x" * 300_000), confirm=lambda: False)

    assert not Email.objects.exists() and drain(aws) == []
    bucket = settings.GOMAIL.payloads.bucket
    assert "Contents" not in aws_client("s3").list_objects_v2(Bucket=bucket)


@pytest.mark.django_db
def test_a_row_the_database_could_not_complete_is_withdrawn_and_sent_once(client_with_key, aws):
    # SQS took the message, then the row could not be marked completed, and no worker claimed
    # the email by the time a retry came past the window. The retry cannot tell this from a
    # request that died before SQS: it withdraws the record (its worker will drop the copy)
    # and is accepted anew. One email is delivered, under the retry's id.
    with mock.patch.object(idempotency, "_mine", side_effect=OperationalError("database gone")):
        first = message_id(send(client_with_key, "order-8"))
    assert row_of("order-8").completed_at is None

    age("order-8", stale())
    retried = message_id(send(client_with_key, "order-8"))

    assert retried != first
    assert Email.objects.get(id=first).status == Email.Status.WITHDRAWN
    assert sorted(message["id"] for message in drain(aws)) == sorted([first, retried])


@pytest.mark.django_db
@pytest.mark.parametrize("record", ["none", "withdrawn"])
def test_a_stale_row_without_a_live_record_is_taken_over(client_with_key, aws, api_key, record):
    # The database failed before the record was written, or while the key was released.
    stale_id = uuid.uuid4()
    if record == "withdrawn":
        Email.objects.create(
            id=stale_id, from_email="a@example.com", to_email="b@example.org", status=record
        )
    IdempotencyKey.objects.create(
        owner=f"key:{api_key[0].pk}",
        key="order-9",
        fingerprint=idempotency.fingerprint({"email": VALID_EMAIL}),
        email_id=stale_id,
        created_at=timezone.now() - stale(),
    )

    accepted = message_id(send(client_with_key, "order-9"))

    assert accepted != str(stale_id)
    assert [message["id"] for message in drain(aws)] == [accepted]
    row = row_of("order-9")
    assert str(row.email_id) == accepted and row.completed_at is not None


def test_only_one_of_two_takers_of_a_stale_row_wins(db):
    IdempotencyKey.objects.create(
        owner="anonymous", key="raced", fingerprint=SAME, email_id=uuid.uuid4()
    )
    # Two requests read the same stale row, then both try to take it.
    first_read, second_read = (row_of("raced") for _ in range(2))

    assert idempotency._take_over(first_read, SAME, winner := uuid.uuid4())
    assert not idempotency._take_over(second_read, SAME, uuid.uuid4())
    assert row_of("raced").email_id == winner


def hold_accept() -> tuple[Any, threading.Event, threading.Event]:
    """A patch of the view's ``accept`` that waits, having reserved its key, until released."""
    entered, release = threading.Event(), threading.Event()
    real_accept = accepting.accept

    def held(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        assert release.wait(30), "never released"
        return real_accept(*args, **kwargs)

    return mock.patch("emails.views.accept", side_effect=held), entered, release


def in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    answers: list[Any] = []

    def run() -> None:
        try:
            answers.append(call())
        finally:
            connection.close()  # this thread's own connection, before the test database goes

    thread = threading.Thread(target=run)
    thread.start()
    return thread, answers


@pytest.mark.django_db(transaction=True)
def test_a_duplicate_while_the_first_is_in_progress_is_a_409(api_key, aws):
    patch, entered, release = hold_accept()
    raw_key = api_key[1]
    with patch:
        first, answers = in_thread(lambda: send(keyed(raw_key), "order-10"))
        try:
            assert entered.wait(30)
            duplicate = send(keyed(raw_key), "order-10")
            conflicting = send(keyed(raw_key), "order-10", OTHER_EMAIL)
        finally:
            release.set()
            first.join(30)

    assert_error(duplicate, 409, idempotency.IN_PROGRESS)
    assert_error(conflicting, 422, idempotency.DIFFERENT_REQUEST)
    [answer] = answers
    accepted = message_id(answer)
    assert message_id(send(keyed(raw_key), "order-10")) == accepted
    assert [message["id"] for message in drain(aws)] == [accepted]


# --- two API processes ---------------------------------------------------------------------------


def post_to(url: str, raw_key: str, key: str) -> tuple[int, Any]:
    call = urllib.request.Request(
        f"{url}/email/send",
        data=json.dumps({"email": VALID_EMAIL}).encode(),
        method="POST",
        headers={
            "Authorization": f"Bearer {raw_key}",
            "Content-Type": "application/json",
            "Idempotency-Key": key,
        },
    )
    try:
        with urllib.request.urlopen(call, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def two_api_processes(transactional_db: None, tmp_path: Path) -> Iterator[list[str]]:
    """Two gunicorn processes (4 threads each) on the test database (a file with SQLite, see
    tests/settings.py), as tests/security/test_throttling.py starts them."""
    with ProcessGroup("idempotency", child_environment(), tmp_path) as group:
        servers = [
            group.gunicorn(f"web-{index}", workers=1, threads=4, access_log=False)
            for index in range(2)
        ]
        yield [server.url for server in servers]


DUPLICATES = 8
ROUNDS = 3


def test_concurrent_duplicates_at_two_api_processes_make_one_email(aws, two_api_processes):
    _, raw_key = ApiKey.create_key("two processes")
    accepted = []
    for round_ in range(ROUNDS):
        key = f"concurrent-{round_}"
        start = threading.Barrier(DUPLICATES)

        def duplicate(index: int, key: str = key, start: threading.Barrier = start) -> Any:
            start.wait(30)  # all at once, half at each process
            return post_to(two_api_processes[index % 2], raw_key, key)

        with ThreadPoolExecutor(max_workers=DUPLICATES) as pool:
            answers = list(pool.map(duplicate, range(DUPLICATES)))

        ids = {body["messageId"] for status, body in answers if status == 200}
        others = [(status, body) for status, body in answers if status != 200]
        assert len(ids) == 1, answers
        assert all(
            (status, body) == (409, {"errors": {"base": idempotency.IN_PROGRESS}})
            for status, body in others
        ), answers
        accepted.append(ids.pop())

    assert sorted(message["id"] for message in drain(aws)) == sorted(accepted)
    assert sorted(str(i) for i in Email.objects.values_list("id", flat=True)) == sorted(accepted)
