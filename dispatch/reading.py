"""Steps 1 and 2 of the pipeline: how much to read from the incoming queues, with how many readers.

Pure decisions (DESIGN §5.1, §5.2, §8): no I/O, no clock. The pipeline task reads each queue's
`ApproximateNumberOfMessages` (depth) and `ApproximateNumberOfMessagesNotVisible` (in flight),
and the providers' capacity and in-flight counts, then asks these functions how many
`ReceiveMessage` calls to make and how many messages each may ask for.

Three limits apply, tightest wins:

- per queue, the in-flight cap (`readable_depth`): what is read stays invisible until it is
  settled, and SQS refuses to hold more than 120,000 in-flight messages per standard queue;
- per run, backpressure (`read_allowance`): no more than the provider workers can settle within
  the visibility timeout, or messages come back visible while still queued for a worker and
  are read and sent twice;
- per queue, the number of concurrent readers (`readers_for_depth`), each receiving at most
  `per_reader` (SQS allows at most 10 per call).

`plan_reads` composes the three into one answer per queue.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dispatch.splitting import ProviderRoute, integer_weights, share_sizes

#: SQS's upper bound for `MaxNumberOfMessages` in one `ReceiveMessage` call.
SQS_MAX_RECEIVE = 10


@dataclass(frozen=True)
class QueueLevels:
    """One incoming queue's counters, as SQS reported them at the start of a run.

    `depth` is `ApproximateNumberOfMessages` (visible, waiting to be read); `in_flight` is
    `ApproximateNumberOfMessagesNotVisible` (read and not yet deleted or handed back).
    `skipped`: SQS did not tell (the call failed); the queue is not read this run, since its
    in-flight cap cannot be checked and its receives would most likely fail the same way.
    """

    depth: int
    in_flight: int
    skipped: bool = False


#: The levels of a queue whose counters could not be read: nothing is read from it this run.
SKIPPED = QueueLevels(depth=0, in_flight=0, skipped=True)


def readable_depth(depth: int, in_flight: int, max_in_flight: int) -> int:
    """How many of a queue's `depth` visible messages may be read now.

    Reading makes messages in flight, so at most `max_in_flight - in_flight` may be read, and
    never more than the depth. The result is in `0..depth`; 0 when the queue is at or over the
    cap. Raises ValueError when any argument is negative.
    """
    _check_not_negative(depth=depth, in_flight=in_flight, max_in_flight=max_in_flight)
    return min(depth, _room(in_flight, max_in_flight))


def readers_for_depth(
    depth: int,
    max_readers: int,
    per_reader: int = SQS_MAX_RECEIVE,
    *,
    budget: int | None = None,
) -> int:
    """How many concurrent readers (one `ReceiveMessage` each) to start for a queue.

    `depth` is the queue's (readable) depth, `per_reader` the most one reader receives, and
    `budget` the most this queue may deliver this run (None: no limit beyond `depth`).

    Returns `ceil(min(depth, budget) / per_reader)`, bounded to `1..max_readers`: at least one
    reader even at depth 0, because the depth is only an estimate and a short poll of an empty
    queue costs nothing. "Nothing may be read" is said with `budget=0`, which returns 0; a depth
    of 0 never does, since it cannot tell "empty" from "not counted yet".

    Raises ValueError when `max_readers` < 1, `per_reader` is outside 1..10, or `depth` or
    `budget` is negative.
    """
    _check_reader_limits(max_readers, per_reader)
    return _readers(depth, max_readers, per_reader, budget)


def _readers(depth: int, max_readers: int, capacity: int, budget: int | None) -> int:
    # readers_for_depth for readers that each take up to ``capacity`` (several receives).
    _check_not_negative(depth=depth)
    if budget is not None:
        _check_not_negative(budget=budget)
        if budget == 0:
            return 0
        depth = min(depth, budget)
    return min(max(-(-depth // capacity), 1), max_readers)  # integer ceil: no float rounding


def reader_quotas(readers: int, budget: int, per_reader: int = SQS_MAX_RECEIVE) -> list[int]:
    """`MaxNumberOfMessages` for each of `readers` concurrent readers sharing `budget` messages.

    Readers run concurrently, so each needs its own limit up front for the queue's total to stay
    within `budget`. Returns up to `readers` quotas, each in `1..per_reader`, whose sum is at
    most `budget`; the earliest readers are filled first. A reader that would get 0 is left out,
    so the list is shorter than `readers` when the budget runs out (never with a reader count
    from `readers_for_depth(..., budget=budget)`).

    Raises ValueError when `readers` or `budget` is negative or `per_reader` is outside 1..10.
    """
    _check_reader_limits(1, per_reader)
    return _quotas(readers, budget, per_reader)


def _quotas(readers: int, budget: int, per_reader: int) -> list[int]:
    # reader_quotas for readers that each take up to ``per_reader`` (several receives).
    _check_not_negative(readers=readers, budget=budget)
    quotas = []
    remaining = budget
    for _ in range(readers):
        quota = min(per_reader, remaining)
        if quota == 0:
            break
        quotas.append(quota)
        remaining -= quota
    return quotas


def read_allowance(
    providers: Sequence[ProviderRoute],
    capacity: Mapping[str, int],
    in_flight: Mapping[str, int],
) -> int:
    """Backpressure (DESIGN §8): how many messages this run may read in total, over all queues.

    `capacity[name]` is how many messages provider `name`'s workers can settle within the
    incoming queues' visibility timeout; `in_flight[name]` how many are already dispatched to
    it and not settled (missing: 0). Its headroom is `max(capacity - in_flight, 0)`.

    The answer is the most messages that `plan_split(..., providers)` can place without pushing
    a provider past its headroom, for every number of messages up to it (a run may read fewer
    than its allowance) and on a probe turn or not. The healthy providers take the split's
    weighted shares, so the answer starts from `_most_placeable(healthy)`: the largest T such that
    the weighted split of every total up to T keeps each healthy provider within its headroom
    (with equal weights and the smallest headroom first in the order, that is
    `len(healthy) * min(healthy headroom)`). Plus one probe per unhealthy provider, which is
    exempt from headroom (a probe is how a provider is found well again, and one per run bounds
    its in-flight by the run rate), but only when the healthy providers can take one message
    each, since probes come after that. With no healthy provider, the split is by weight among
    all: `_most_placeable(providers)`, no probes.

    Raises ValueError when `providers` is empty, a name repeats, a provider has no capacity, or
    a count is negative.
    """
    share_sizes(0, providers)  # validates the providers the same way the split will
    headroom = {}
    for route in providers:
        if route.name not in capacity:
            raise ValueError(f"no capacity given for provider {route.name!r}")
        provider_capacity = capacity[route.name]
        provider_in_flight = in_flight.get(route.name, 0)
        _check_not_negative(capacity=provider_capacity, in_flight=provider_in_flight)
        headroom[route.name] = _room(provider_in_flight, provider_capacity)

    healthy = [route for route in providers if route.healthy]
    if not healthy:
        return _most_placeable(providers, headroom)
    most = _most_placeable(healthy, headroom)
    if most < len(healthy):
        return most  # fewer messages than healthy providers: the split places no probe
    return most + len(providers) - len(healthy)


def _most_placeable(routes: Sequence[ProviderRoute], headroom: Mapping[str, int]) -> int:
    """The largest T such that, for every total up to T, the weighted split among ``routes``
    (all taken as healthy) gives no route more than its ``headroom``.

    Every total up to T, not only T: largest-remainder apportionment can give a route one
    message less of a larger total (the Alabama paradox), and a run may read fewer messages than
    it may. A route's share of T is at most its quota rounded up, so every T up to
    ``min(headroom * W / weight)`` fits (W: the weights' sum); from there ``share_sizes`` itself
    is asked, one total at a time, until one does not fit. That is about W / weight steps for
    the route that binds there (a share is its quota rounded down or up), and never more than
    the sum of the headrooms (no larger total fits).
    """
    everyone = [ProviderRoute(route.name, True, route.weight) for route in routes]
    weights = dict(zip((route.name for route in routes), integer_weights(routes), strict=True))
    whole = sum(weights.values())
    limit = sum(headroom[route.name] for route in routes)
    surely = min(headroom[name] * whole // weight for name, weight in weights.items())
    total = min(surely, limit)
    while total < limit:
        sizes = share_sizes(total + 1, everyone)
        if any(sizes[name] > headroom[name] for name in sizes):
            break
        total += 1
    return total


def divide_allowance(wants: Sequence[int], allowance: int) -> list[int]:
    """Share `allowance` messages between queues that want `wants[i]` each, max-min fairly.

    Every queue gets an equal part, no more than it wants; what a small queue leaves goes to the
    others, so one deep queue cannot starve the rest. A remainder goes one message each to the
    earliest queues that still want more. Returns one grant per queue, each in `0..wants[i]`,
    summing to `min(allowance, sum(wants))`.

    Raises ValueError when `allowance` or a want is negative.
    """
    _check_not_negative(allowance=allowance)
    for want in wants:
        _check_not_negative(want=want)
    grants = [0] * len(wants)
    remaining = allowance
    hungry = [index for index, want in enumerate(wants) if want > 0]
    while remaining > 0 and hungry:
        share, extra = divmod(remaining, len(hungry))
        if share == 0:
            # Fewer messages left than queues wanting them: one each, earliest first.
            for index in hungry[:extra]:
                grants[index] += 1
            remaining = 0
            break
        for index in hungry:
            grant = min(share, wants[index] - grants[index])
            grants[index] += grant
            remaining -= grant
        hungry = [index for index in hungry if grants[index] < wants[index]]
    return grants


def plan_reads(
    queues: Sequence[QueueLevels],
    *,
    max_in_flight: int,
    max_readers: int,
    per_reader: int = SQS_MAX_RECEIVE,
    receives_per_reader: int = 1,
    allowance: int | None = None,
) -> list[list[int]]:
    """The whole read decision: for each queue, how many messages each reader receives.

    A reader makes up to `receives_per_reader` `ReceiveMessage` calls of at most `per_reader`
    messages each, one after the other, so it may take `per_reader * receives_per_reader`; a
    run's intake per queue is then not capped at `max_readers * 10` (a deep backlog drains at
    the providers' pace, not the pipeline interval's). For each queue (in the order given) its
    budget is what its readers would take (readers of that capacity each, at least one reader
    even at depth 0),
    bounded by its in-flight room under `max_in_flight`; then the run's `allowance` (from
    `read_allowance`; None: no backpressure) is shared between the queues by
    `divide_allowance`. Each queue's budget becomes `readers_for_depth(..., budget=...)`
    readers with `reader_quotas`. A `skipped` queue wants nothing, not even the one poll.
    Returns one list per queue; an empty list means "do not read that queue this run". The
    sum over all quotas never exceeds `allowance`, and no queue's quotas exceed its in-flight
    room.

    Raises ValueError on a negative count, `max_readers` < 1, `per_reader` outside 1..10 or
    `receives_per_reader` < 1.
    """
    _check_not_negative(max_in_flight=max_in_flight)
    _check_reader_limits(max_readers, per_reader)
    if receives_per_reader < 1:
        raise ValueError(f"receives_per_reader must be >= 1, got {receives_per_reader}")
    capacity = per_reader * receives_per_reader
    wants = []
    for queue in queues:
        _check_not_negative(depth=queue.depth, in_flight=queue.in_flight)
        if queue.skipped:
            wants.append(0)  # a budget of 0 is no reader at all (`_readers`)
            continue
        room = _room(queue.in_flight, max_in_flight)
        readers = _readers(queue.depth, max_readers, capacity, budget=room)
        wants.append(min(room, readers * capacity))

    budgets = wants if allowance is None else divide_allowance(wants, allowance)
    plans = []
    for queue, budget in zip(queues, budgets, strict=True):
        readers = _readers(queue.depth, max_readers, capacity, budget=budget)
        plans.append(_quotas(readers, budget, capacity))
    return plans


def receive_sizes(quota: int, per_receive: int = SQS_MAX_RECEIVE) -> list[int]:
    """The `MaxNumberOfMessages` of each receive of a reader with `quota`, in order. Pure.

    The reader stops early once a receive returns fewer than it asked for: the queue is (for
    the moment) empty."""
    full, rest = divmod(quota, per_receive)
    return [per_receive] * full + ([rest] if rest else [])


def _room(in_flight: int, cap: int) -> int:
    """How far `in_flight` is below `cap`; 0 when at or over it (counts are estimates)."""
    return max(cap - in_flight, 0)


def _check_not_negative(**counts: int) -> None:
    for name, value in counts.items():
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")


def _check_reader_limits(max_readers: int, per_reader: int) -> None:
    if max_readers < 1:
        raise ValueError(f"max_readers must be >= 1, got {max_readers}")
    if not 1 <= per_reader <= SQS_MAX_RECEIVE:
        raise ValueError(f"per_reader must be in 1..{SQS_MAX_RECEIVE}, got {per_reader}")


def routes_with_room(
    providers: Sequence[ProviderRoute],
    capacity: Mapping[str, int],
    in_flight: Mapping[str, int],
) -> list[ProviderRoute]:
    """The providers this run's split may use: a healthy provider at its ``max_in_flight``
    sits this run out, so that one provider at its limit (its workers stopped consuming, or
    slow) does not stop reading for the others. Pure.

    Kept as they are when every healthy provider is at its limit: the unhealthy ones must not
    take the whole split then (``read_allowance`` reads nothing for them). An unhealthy
    provider is always kept: it gets a probe, which is exempt from headroom.
    """
    full = {
        route.name
        for route in providers
        if route.healthy and _room(in_flight.get(route.name, 0), capacity[route.name]) == 0
    }
    if not any(route.healthy and route.name not in full for route in providers):
        return list(providers)
    return [route for route in providers if route.name not in full]
