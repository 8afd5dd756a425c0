"""One ``SendMessageBatch`` for the emails that API threads accept at the same time.

Each API request hands its encoded message to the process's ``SendBatcher`` and waits for
its own entry's outcome. One sender thread takes what is pending, up to ten messages of one
queue within SQS's batch byte limit, and sends them in one call; while that call is in flight
the next requests gather, so the batches grow with the load by themselves. When other
requests are already on their way (accepted by this process, not yet handed over), the sender
waits up to ``linger`` for them: a few milliseconds that only a busy process pays.

Each entry succeeds or fails alone: SQS answers per entry, and a failed entry (or a failed
call) is that request's 503 only. The grouping (``next_batch``) and the reading of SQS's answer
(``entry_outcomes``) are pure functions; the thread around them is thin.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

SQS_BATCH_ENTRIES = 10


class EntryFailed(Exception):
    """SQS did not take this entry (the whole call failed, or it refused the entry)."""


@dataclass
class Pending:
    """A message waiting for its batch; ``outcome`` resolves to SQS's MessageId."""

    queue_url: str
    body: str
    size: int
    outcome: Future = field(default_factory=Future)


def next_batch(
    pending: Sequence[Pending], max_entries: int, max_bytes: int
) -> tuple[list[Pending], list[Pending]]:
    """The next batch (the oldest entry's queue, in order, within both limits) and the rest.

    Pure. An entry of another queue, or one that would overflow the byte limit, waits for a
    later batch in its place; the oldest entry always goes, so nothing starves.
    """
    if not pending:
        return [], []
    queue_url = pending[0].queue_url
    batch: list[Pending] = []
    rest: list[Pending] = []
    size = 0
    for entry in pending:
        fits = len(batch) < max_entries and (not batch or size + entry.size <= max_bytes)
        if entry.queue_url == queue_url and fits:
            batch.append(entry)
            size += entry.size
        else:
            rest.append(entry)
    return batch, rest


def entry_outcomes(answer: Mapping[str, Any], count: int) -> list[str | EntryFailed]:
    """Each entry's MessageId, or the reason SQS gave for refusing it, in entry order.

    Pure. Entries are numbered ``"0"``..``count - 1``; one SQS named in neither list failed.
    """
    outcomes: list[str | EntryFailed] = [
        EntryFailed("SQS did not answer for this entry") for _ in range(count)
    ]
    for success in answer.get("Successful", []):
        outcomes[int(success["Id"])] = success["MessageId"]
    for failure in answer.get("Failed", []):
        reason = f"{failure.get('Code', 'Failed')}: {failure.get('Message', '')}".rstrip(": ")
        outcomes[int(failure["Id"])] = EntryFailed(reason)
    return outcomes


SendBatch = Callable[[str, list[dict[str, str]]], Mapping[str, Any]]


class SendBatcher:
    """Gathers messages from this process's threads into ``SendMessageBatch`` calls."""

    def __init__(
        self,
        send_batch: SendBatch,
        *,
        linger: Callable[[], float],
        max_bytes: int,
        max_entries: int = SQS_BATCH_ENTRIES,
    ) -> None:
        self._send_batch = send_batch
        self._linger = linger
        self._max_bytes = max_bytes
        self._max_entries = max_entries
        self._lock = threading.Condition()
        self._pending: list[Pending] = []
        self._arriving = 0
        self._thread: threading.Thread | None = None
        self._pid = 0

    def arriving(self) -> Arrival:
        """Announce a message about to be handed over (its record is written first), so that
        a batch leaving meanwhile may wait for it::

            with batcher.arriving() as arrival:
                ...  # write the record
                message_id = arrival.send(queue_url, body, size, timeout)
        """
        return Arrival(self)

    def send(self, queue_url: str, body: str, size: int, timeout: float) -> str:
        """Queue ``body`` for the next batch; its MessageId once SQS took it.

        Raises ``EntryFailed`` when SQS refused it or the call failed, ``TimeoutError`` when no
        answer came within ``timeout`` (the message may still have been taken).
        """
        return self._submit(Pending(queue_url, body, size), announced=False).result(timeout)

    def _submit(self, entry: Pending, *, announced: bool) -> Future:
        with self._lock:
            self._ensure_thread()
            self._pending.append(entry)
            if announced:
                self._arriving -= 1
            self._lock.notify_all()
        return entry.outcome

    def _announce(self, delta: int) -> None:
        with self._lock:
            self._arriving += delta
            self._lock.notify_all()

    def _ensure_thread(self) -> None:
        # A forked child (a gunicorn worker) inherits no running thread: start its own.
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="sqs-batcher", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            batch = self._take()
            self._deliver(batch)

    def _take(self) -> list[Pending]:
        with self._lock:
            while not self._pending:
                self._lock.wait()
            deadline = time.monotonic() + self._linger()
            while len(self._pending) < self._max_entries and self._arriving:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(left)
            batch, self._pending = next_batch(self._pending, self._max_entries, self._max_bytes)
            return batch

    def _deliver(self, batch: list[Pending]) -> None:
        entries = [{"Id": str(i), "MessageBody": e.body} for i, e in enumerate(batch)]
        try:
            outcomes = entry_outcomes(self._send_batch(batch[0].queue_url, entries), len(batch))
        except Exception as exc:  # every waiting request must hear of it
            logger.warning("SendMessageBatch of %d failed: %s", len(batch), exc)
            outcomes = [EntryFailed(str(exc)) for _ in batch]
        for entry, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, EntryFailed):
                entry.outcome.set_exception(outcome)
            else:
                entry.outcome.set_result(outcome)


class Arrival:
    """A message announced to a ``SendBatcher``; ``send`` hands it over (at most once)."""

    def __init__(self, batcher: SendBatcher) -> None:
        self._batcher = batcher
        self._announced = False

    def __enter__(self) -> Arrival:
        self._batcher._announce(+1)
        self._announced = True
        return self

    def send(self, queue_url: str, body: str, size: int, timeout: float) -> str:
        """As ``SendBatcher.send``, ending the announcement in the same step."""
        announced, self._announced = self._announced, False
        entry = Pending(queue_url, body, size)
        return self._batcher._submit(entry, announced=announced).result(timeout)

    def __exit__(self, *exc_info: object) -> None:
        if self._announced:  # never handed over (its record could not be written)
            self._announced = False
            self._batcher._announce(-1)
