"""Rate limits of the API (emails/throttling.py): per API key and per signed-in user, in the
shared database cache, so that they hold across API processes.

In-process tests check who and what is counted and the 429's shape; the last tests start two
real gunicorn processes on the test database and show that the limit is one limit in total,
not one per process, also under concurrent requests.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from emails.errors import too_many_requests
from emails.models import ApiKey
from tests.clients import keyed, post_email
from tests.harness import ProcessGroup, child_environment

GOOD = {"fromEmail": "a@example.com", "toEmail": "b@example.org", "body": "hi"}
INVALID = {"fromEmail": "a@example.com"}  # a 422, but the throttle counts it first


def send(client: Any, email: dict[str, str] = GOOD) -> Any:
    return post_email(client, email)


def new_key(name: str = "throttled", user: Any = None) -> APIClient:
    return keyed(ApiKey.create_key(name, user=user)[1])


def signed_in(username: str) -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_user(username=username, password="x"))
    return client


def assert_throttled(response: Any) -> int:
    """The 429's shape; returns its Retry-After."""
    assert response.status_code == 429, (response.status_code, response.content)
    retry_after = int(response["Retry-After"])
    assert retry_after >= 1
    assert response.json() == {"errors": {"base": too_many_requests(retry_after)}}
    return retry_after


# --- the message --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wait", "message"),
    [
        (42, "Too many requests: retry in 42 seconds"),
        (41.2, "Too many requests: retry in 42 seconds"),
        (2, "Too many requests: retry in 2 seconds"),
        (1, "Too many requests: retry in 1 seconds"),
        (0.3, "Too many requests: retry in 1 seconds"),
        (None, "Too many requests"),
    ],
)
def test_message(wait: float | None, message: str) -> None:
    assert too_many_requests(wait) == message


# --- in one process -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_key_gets_its_rate_of_sends_then_a_429_with_retry_after(aws, gomail_config):
    gomail_config(api={"rate_limit_per_key": "3/min"})
    client = new_key()

    assert [send(client).status_code for _ in range(3)] == [200, 200, 200]
    retry_after = assert_throttled(send(client))

    assert 55 <= retry_after <= 60  # the first of the three counts for a minute
    assert send(new_key("another")).status_code == 200  # each key has its own budget


@pytest.mark.django_db
def test_a_signed_in_user_gets_the_user_rate(gomail_config):
    gomail_config(api={"rate_limit_per_user": "2/min", "rate_limit_per_key": "100/min"})
    alice = signed_in("alice")

    assert [send(alice, INVALID).status_code for _ in range(2)] == [422, 422]
    assert_throttled(send(alice, INVALID))
    assert send(signed_in("bob"), INVALID).status_code == 422


@pytest.mark.django_db
def test_a_users_key_counts_against_the_key_not_against_the_user(gomail_config):
    gomail_config(api={"rate_limit_per_user": "2/min", "rate_limit_per_key": "4/min"})
    user = get_user_model().objects.create_user(username="owner", password="x")
    session = Client()
    session.force_login(user)
    key = new_key(user=user)

    assert [send(key, INVALID).status_code for _ in range(4)] == [422] * 4
    assert_throttled(send(key, INVALID))
    # The key's four requests did not use up the user's own two.
    assert [send(session, INVALID).status_code for _ in range(2)] == [422, 422]
    assert_throttled(send(session, INVALID))


@pytest.mark.django_db
def test_sending_and_reading_have_separate_budgets(gomail_config):
    gomail_config(api={"rate_limit_per_key": "2/min"})
    client = new_key()

    assert [send(client, INVALID).status_code for _ in range(2)] == [422, 422]
    assert_throttled(send(client, INVALID))
    assert [client.get("/email/recent").status_code for _ in range(2)] == [200, 200]
    assert_throttled(client.get("/email/recent"))
    assert_throttled(client.get("/email/00000000-0000-0000-0000-000000000000"))
    assert_throttled(client.get("/providers"))


@pytest.mark.django_db
def test_the_rate_is_read_per_request(gomail_config):
    gomail_config(api={"rate_limit_per_key": "1/min"})
    client = new_key()
    assert client.get("/email/recent").status_code == 200
    assert_throttled(client.get("/email/recent"))

    gomail_config(api={"rate_limit_per_key": "3/min"})

    assert [client.get("/email/recent").status_code for _ in range(2)] == [200, 200]
    assert_throttled(client.get("/email/recent"))


@pytest.mark.django_db
def test_a_refused_request_does_not_count_and_the_budget_comes_back(gomail_config, time_machine):
    gomail_config(api={"rate_limit_per_key": "2/s"})
    # A stopped clock (DRF's throttle timer and the cache's expiry alike): each burst is at one
    # instant however slowly the machine serves it; then the clock moves on by hand.
    time_machine.move_to(datetime(2026, 1, 1, 12, tzinfo=UTC), tick=False)
    client = new_key()

    first = [client.get("/email/recent") for _ in range(4)]
    assert [r.status_code for r in first[:2]] == [200, 200]
    assert assert_throttled(first[2]) == 1
    assert_throttled(first[3])

    time_machine.shift(timedelta(seconds=0.9))  # still within the second: the refusals did
    assert_throttled(client.get("/email/recent"))  # not count, but the two 200s still do
    time_machine.shift(timedelta(seconds=0.2))  # the 200s are over a second old

    again = [client.get("/email/recent") for _ in range(3)]
    assert [r.status_code for r in again[:2]] == [200, 200]
    assert_throttled(again[2])


@pytest.mark.django_db
def test_anonymous_callers_on_a_trusted_network_are_not_limited(gomail_config):
    gomail_config(
        api={"require_auth": False, "rate_limit_per_key": "1/min", "rate_limit_per_user": "1/min"}
    )

    assert [APIClient().get("/email/recent").status_code for _ in range(5)] == [200] * 5


@pytest.mark.django_db
def test_unauthenticated_requests_are_refused_before_they_are_counted(gomail_config):
    gomail_config(api={"rate_limit_per_key": "1/min"})

    assert [APIClient().get("/email/recent").status_code for _ in range(3)] == [401] * 3


# --- across two API processes -----------------------------------------------------------------


def request(
    url: str, *, key: str, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, str], Any]:
    data = json.dumps({"email": body}).encode() if body is not None else None
    call = urllib.request.Request(
        url,
        data=data,
        method="POST" if body is not None else "GET",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(call, timeout=30) as answer:
            return answer.status, dict(answer.headers), json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


RATE = 5


@pytest.fixture(scope="module")
def api_processes(
    django_db_setup: None, moto_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[str]]:
    """Two gunicorn processes (4 threads each) on the test database, per-key rate RATE/min."""
    env = child_environment({"api": {"rate_limit_per_key": f"{RATE}/min"}})
    with ProcessGroup("throttling", env, tmp_path_factory.mktemp("gunicorn")) as group:
        servers = [
            group.gunicorn(f"web-{index}", workers=1, threads=4, access_log=False)
            for index in range(2)
        ]
        yield [server.url for server in servers]


@pytest.fixture
def two_api_processes(api_processes: list[str], aws: Any, transactional_db: None) -> list[str]:
    return api_processes


def test_the_limit_holds_in_total_across_two_api_processes(two_api_processes):
    _, raw_key = ApiKey.create_key("shared")
    answers = []
    for index in range(RATE + 2):
        base = two_api_processes[index % 2]  # alternate between the processes
        answers.append(request(f"{base}/email/send", key=raw_key, body=GOOD))

    assert [status for status, _, _ in answers] == [200] * RATE + [429, 429]
    for _, headers, body in answers[RATE:]:
        retry_after = int(headers["Retry-After"])
        assert 1 <= retry_after <= 60
        assert body == {"errors": {"base": too_many_requests(retry_after)}}
    # The sixth request was the third at the second process: alone it would have passed.


def test_concurrent_requests_at_both_processes_get_exactly_the_limit(two_api_processes):
    _, raw_key = ApiKey.create_key("concurrent")
    urls = [f"{two_api_processes[index % 2]}/email/recent" for index in range(24)]

    with ThreadPoolExecutor(max_workers=len(urls)) as pool:
        statuses = Counter(
            status for status, _, _ in pool.map(lambda u: request(u, key=raw_key), urls)
        )

    assert statuses == {200: RATE, 429: len(urls) - RATE}
