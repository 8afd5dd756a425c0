"""The load generator: ``processes`` x threads on 127.0.0.1, each thread one client with its
own persistent connection, drawing request numbers from one shared counter until ``total`` are
sent or ``seconds_limit`` is up (it stops by itself either way).

Processes are spawned (not forked: the bench's process runs threads and Django) and build their
clients before the start, so start-up costs nothing of the measured time. With
``rate_per_second`` request ``i`` is not sent before ``start + i / rate`` (a steady load);
without it every client sends as fast as it is answered (a closed loop).

A client is made by a picklable ``ClientFactory`` (``EmailPoster``, ``SqsSender``) in the
process that uses it; calling it with a request number returns ``(status, detail)``: the HTTP
status (0 for a broken connection) and the email's id or the error.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import queue as queue_module
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

Client = Callable[[int], tuple[int, str]]
_START_TIMEOUT_SECONDS = 120.0


class ClientFactory(Protocol):
    def __call__(self) -> Client: ...


@dataclass(frozen=True)
class LoadPlan:
    total: int
    concurrency: int
    processes: int = 2
    seconds_limit: float = 600.0
    rate_per_second: float | None = None


@dataclass(frozen=True)
class Outcome:
    index: int
    status: int
    sent_at: float  # time.time() when the request was sent
    seconds: float  # until its answer was read
    detail: str

    @property
    def answered_at(self) -> float:
        return self.sent_at + self.seconds


@dataclass(frozen=True)
class LoadResult:
    outcomes: list[Outcome]
    started_at: float
    seconds: float  # from the start to the last answer

    @property
    def accepted(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == 200]

    @property
    def refused(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status != 200]


class EmailPoster:
    """``POST /email/send`` of a distinct valid email per request number, with an API key."""

    def __init__(self, api_url: str, api_key: str, timeout: float = 60.0) -> None:
        self.api_url = api_url
        self.api_key = api_key
        self.timeout = timeout

    def __call__(self) -> Client:
        from tests.harness.emails import email_fields

        parts = urlsplit(self.api_url)
        # http.client keeps the connection open while the server does, and reopens it by
        # itself after an answer that closed it (gunicorn's sync workers close every one).
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=self.timeout)
        headers = {"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"}

        def post(index: int) -> tuple[int, str]:
            body = json.dumps({"email": email_fields(index)})
            try:
                connection.request("POST", "/email/send", body=body, headers=headers)
                answer = connection.getresponse()
                text = answer.read().decode("utf-8", "replace")
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                return 0, f"{type(exc).__name__}: {exc}"
            if answer.status == 200:
                return 200, json.loads(text)["messageId"]
            return answer.status, text[:200]

        return post


class SqsSender:
    """One SQS ``SendMessage`` per request number to ``queue_url``, by a boto3 client of its own
    (as the API's: standard retries, here none, so each call is one request)."""

    def __init__(self, endpoint_url: str, queue_url: str) -> None:
        self.endpoint_url = endpoint_url
        self.queue_url = queue_url

    def __call__(self) -> Client:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        client = boto3.session.Session().client(
            "sqs",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
        )
        body = json.dumps({"email": {"fromEmail": "sender@example.com", "body": "x" * 200}})
        # Untimed: the first call resolves the endpoint and opens the connection.
        client.send_message(QueueUrl=self.queue_url, MessageBody=body)

        def send(index: int) -> tuple[int, str]:
            try:
                return 200, client.send_message(QueueUrl=self.queue_url, MessageBody=body)[
                    "MessageId"
                ]
            except ClientError as exc:
                return exc.response["ResponseMetadata"].get("HTTPStatusCode", 0), str(exc)
            except BotoCoreError as exc:
                return 0, str(exc)

        return send


def _threads_per_process(plan: LoadPlan) -> list[int]:
    processes = max(1, min(plan.processes, plan.concurrency))
    share, rest = divmod(plan.concurrency, processes)
    return [share + (1 if index < rest else 0) for index in range(processes)]


def _generate(
    factory: ClientFactory,
    threads: int,
    plan: LoadPlan,
    counter: Any,
    start: Any,
    ready: Any,
    results: Any,
) -> None:
    """One load process: build ``threads`` clients, wait for the start, run them."""
    clients = [factory() for _ in range(threads)]
    ready.put(threads)
    if not start.wait(_START_TIMEOUT_SECONDS):
        results.put([])
        return
    started_at = start_time(counter)
    deadline = started_at + plan.seconds_limit
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def run(client: Client) -> None:
        mine = []
        while True:
            with counter.get_lock():
                index = counter[0]
                counter[0] = index + 1
            if index >= plan.total or time.time() >= deadline:
                break
            if plan.rate_per_second:
                pause = started_at + index / plan.rate_per_second - time.time()
                if pause > 0:
                    time.sleep(pause)
            sent_at, began = time.time(), time.perf_counter()
            status, detail = client(index)
            mine.append(Outcome(index, status, sent_at, time.perf_counter() - began, detail))
        with lock:
            outcomes.extend(mine)

    workers = [threading.Thread(target=run, args=(client,)) for client in clients]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    results.put(outcomes)


def start_time(counter: Any) -> float:
    # The shared array holds [next request number, start time].
    return float(counter[1])


def run_load(plan: LoadPlan, factory: ClientFactory) -> LoadResult:
    """Run ``plan`` with clients from ``factory``; every outcome, whatever its status."""
    context = multiprocessing.get_context("spawn")
    counter = context.Array("d", [0.0, 0.0])
    start, ready, results = context.Event(), context.Queue(), context.Queue()
    shares = _threads_per_process(plan)
    processes = [
        context.Process(
            target=_generate,
            args=(factory, threads, plan, counter, start, ready, results),
            daemon=True,
        )
        for threads in shares
    ]
    for process in processes:
        process.start()
    try:
        for _ in processes:
            ready.get(timeout=_START_TIMEOUT_SECONDS)
        counter[1] = started_at = time.time()
        start.set()
        outcomes: list[Outcome] = []
        for _ in processes:
            outcomes += results.get(timeout=plan.seconds_limit + _START_TIMEOUT_SECONDS)
    except queue_module.Empty as exc:
        raise RuntimeError("a load process did not start or finish in time") from exc
    finally:
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
    outcomes.sort(key=lambda o: o.index)
    ended = max((o.answered_at for o in outcomes), default=started_at)
    return LoadResult(outcomes=outcomes, started_at=started_at, seconds=ended - started_at)
