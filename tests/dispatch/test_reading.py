"""How much the pipeline reads, and with how many readers (DESIGN §5.1, §5.2, §8), as tables."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatch.reading import (
    SQS_MAX_RECEIVE,
    QueueLevels,
    divide_allowance,
    plan_reads,
    read_allowance,
    readable_depth,
    reader_quotas,
    readers_for_depth,
    receive_sizes,
    routes_with_room,
)
from dispatch.splitting import ProviderRoute, share_sizes

CAP = 120_000


# --- the in-flight cap per queue ---------------------------------------------------------


@pytest.mark.parametrize(
    ("depth", "in_flight", "max_in_flight", "expected"),
    [
        pytest.param(0, 0, CAP, 0, id="empty queue"),
        pytest.param(50, 0, CAP, 50, id="nothing in flight: all of it"),
        pytest.param(50, 1_000, CAP, 50, id="far below the cap"),
        pytest.param(500, 119_900, CAP, 100, id="only up to the cap"),
        pytest.param(100, 119_900, CAP, 100, id="exactly up to the cap"),
        pytest.param(500, CAP, CAP, 0, id="at the cap: nothing"),
        pytest.param(500, CAP + 10, CAP, 0, id="over the cap (estimates): nothing, not negative"),
        pytest.param(500, 0, 0, 0, id="cap of zero"),
        pytest.param(200_000, 0, CAP, CAP, id="deeper than the cap"),
    ],
)
def test_readable_depth_table(
    depth: int, in_flight: int, max_in_flight: int, expected: int
) -> None:
    assert readable_depth(depth, in_flight, max_in_flight) == expected


@pytest.mark.parametrize(
    ("depth", "in_flight", "max_in_flight"), [(-1, 0, CAP), (0, -1, CAP), (0, 0, -1)]
)
def test_readable_depth_refuses_negative_counts(
    depth: int, in_flight: int, max_in_flight: int
) -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        readable_depth(depth, in_flight, max_in_flight)


# --- readers per queue -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("depth", "max_readers", "expected"),
    [
        pytest.param(0, 50, 1, id="depth 0: one reader anyway, the depth is an estimate"),
        pytest.param(1, 50, 1, id="depth 1"),
        pytest.param(9, 50, 1, id="depth 9"),
        pytest.param(10, 50, 1, id="depth 10: one full receive"),
        pytest.param(11, 50, 2, id="depth 11: ceil"),
        pytest.param(100, 50, 10, id="depth 100"),
        pytest.param(101, 50, 11, id="depth 101"),
        pytest.param(1_000, 50, 50, id="capped by max_readers"),
        pytest.param(100, 10, 10, id="exactly max_readers"),
        pytest.param(0, 1, 1, id="max_readers 1"),
        pytest.param(10**19 + 1, 10**19, 10**18 + 1, id="huge depth: exact integer ceil"),
    ],
)
def test_readers_for_depth_table(depth: int, max_readers: int, expected: int) -> None:
    assert readers_for_depth(depth, max_readers) == expected


@pytest.mark.parametrize(
    ("depth", "budget", "per_reader", "expected"),
    [
        pytest.param(100, 0, 10, 0, id="budget 0: nothing may be read, no reader"),
        pytest.param(0, 0, 10, 0, id="budget 0 at depth 0"),
        pytest.param(0, 5, 10, 1, id="depth 0 with budget: one reader"),
        pytest.param(100, 25, 10, 3, id="budget below depth bounds the readers"),
        pytest.param(15, 1_000, 10, 2, id="budget above depth: depth decides"),
        pytest.param(100, None, 10, 10, id="no budget"),
        pytest.param(10, None, 3, 4, id="smaller receives"),
        pytest.param(10, None, 1, 10, id="one message per receive"),
    ],
)
def test_readers_for_depth_with_budget(
    depth: int, budget: int | None, per_reader: int, expected: int
) -> None:
    assert readers_for_depth(depth, 50, per_reader, budget=budget) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"depth": 1, "max_readers": 0}, "max_readers"),
        ({"depth": 1, "max_readers": 5, "per_reader": 0}, "per_reader"),
        ({"depth": 1, "max_readers": 5, "per_reader": 11}, "per_reader"),
        ({"depth": -1, "max_readers": 5}, "depth"),
        ({"depth": 1, "max_readers": 5, "budget": -1}, "budget"),
    ],
)
def test_readers_for_depth_refuses_bad_limits(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        readers_for_depth(**kwargs)


@pytest.mark.parametrize(
    ("readers", "budget", "per_reader", "expected"),
    [
        pytest.param(0, 100, 10, [], id="no readers"),
        pytest.param(3, 0, 10, [], id="no budget"),
        pytest.param(1, 10, 10, [10], id="one full reader"),
        pytest.param(1, 3, 10, [3], id="one reader, small budget"),
        pytest.param(3, 25, 10, [10, 10, 5], id="last reader takes the rest"),
        pytest.param(3, 100, 10, [10, 10, 10], id="budget above what the readers take"),
        pytest.param(4, 25, 10, [10, 10, 5], id="more readers than the budget needs"),
        pytest.param(2, 5, 3, [3, 2], id="smaller receives"),
    ],
)
def test_reader_quotas_table(
    readers: int, budget: int, per_reader: int, expected: list[int]
) -> None:
    assert reader_quotas(readers, budget, per_reader) == expected


def test_reader_quotas_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="readers"):
        reader_quotas(-1, 10)
    with pytest.raises(ValueError, match="budget"):
        reader_quotas(1, -1)
    with pytest.raises(ValueError, match="per_reader"):
        reader_quotas(1, 10, per_reader=SQS_MAX_RECEIVE + 1)


# --- backpressure ------------------------------------------------------------------------


def routes(spec: str) -> list[ProviderRoute]:
    """'Ab' -> A healthy, B unhealthy (upper case: healthy)."""
    return [ProviderRoute(name=letter.upper(), healthy=letter.isupper()) for letter in spec]


@pytest.mark.parametrize(
    ("spec", "capacity", "in_flight", "expected"),
    [
        pytest.param("AB", {"A": 100, "B": 100}, {}, 200, id="both healthy, idle"),
        pytest.param("AB", {"A": 100, "B": 100}, {"A": 30}, 140, id="slowest healthy bounds"),
        pytest.param("AB", {"A": 40, "B": 100}, {}, 80, id="smaller capacity bounds"),
        # The remainder goes to the first in the order (the pipeline rotates it): with room
        # there, one more fits.
        pytest.param("AB", {"A": 100, "B": 40}, {}, 81, id="smaller capacity second: one more"),
        pytest.param("AB", {"A": 100, "B": 100}, {"A": 100}, 0, id="one saturated: nothing"),
        pytest.param("AB", {"A": 100, "B": 100}, {"A": 150}, 0, id="over capacity: not negative"),
        pytest.param("Ab", {"A": 100, "B": 100}, {}, 101, id="one unhealthy: its probe"),
        pytest.param("Ab", {"A": 100, "B": 100}, {"B": 100}, 101, id="probe exempt from headroom"),
        pytest.param("Ab", {"A": 100, "B": 100}, {"A": 100}, 0, id="healthy saturated: no probe"),
        pytest.param("ab", {"A": 60, "B": 100}, {}, 120, id="none healthy: even split bound"),
        pytest.param("ab", {"A": 100, "B": 60}, {}, 121, id="none healthy: remainder to A"),
        pytest.param("ab", {"A": 100, "B": 100}, {"A": 100}, 0, id="none healthy, first full"),
        pytest.param("ab", {"A": 100, "B": 100}, {"B": 100}, 1, id="none healthy, 2nd full: 1"),
        pytest.param("ABc", {"A": 50, "B": 70, "C": 9}, {"A": 10}, 81, id="three providers"),
        pytest.param("ABc", {"A": 50, "B": 70, "C": 9}, {"B": 30}, 82, id="three, remainder fits"),
        pytest.param("A", {"A": 7}, {"A": 2}, 5, id="one provider"),
        pytest.param("AB", {"A": 0, "B": 100}, {}, 0, id="zero capacity"),
    ],
)
def test_read_allowance_table(
    spec: str, capacity: dict[str, int], in_flight: dict[str, int], expected: int
) -> None:
    assert read_allowance(routes(spec), capacity, in_flight) == expected


def test_read_allowance_needs_every_capacity() -> None:
    with pytest.raises(ValueError, match="no capacity given for provider 'B'"):
        read_allowance(routes("AB"), {"A": 10}, {})


@pytest.mark.parametrize(
    ("providers", "capacity", "in_flight", "message"),
    [
        ([], {}, {}, "at least one provider"),
        (routes("A"), {"A": -1}, {}, "capacity"),
        (routes("A"), {"A": 1}, {"A": -1}, "in_flight"),
    ],
)
def test_read_allowance_refuses_bad_input(
    providers: list[ProviderRoute],
    capacity: dict[str, int],
    in_flight: dict[str, int],
    message: str,
) -> None:
    with pytest.raises(ValueError, match=message):
        read_allowance(providers, capacity, in_flight)


@given(
    health=st.lists(st.booleans(), min_size=1, max_size=5),
    data=st.data(),
)
def test_split_of_the_allowance_fits_every_healthy_headroom(
    health: list[bool], data: st.DataObject
) -> None:
    providers = [ProviderRoute(f"p{index}", healthy) for index, healthy in enumerate(health)]
    capacity = {
        route.name: data.draw(st.integers(min_value=0, max_value=500)) for route in providers
    }
    in_flight = {
        route.name: data.draw(st.integers(min_value=0, max_value=600)) for route in providers
    }
    headroom = {name: max(capacity[name] - in_flight[name], 0) for name in capacity}

    allowance = read_allowance(providers, capacity, in_flight)
    sizes = share_sizes(allowance, providers)

    for route in providers:
        if route.healthy or not any(health):
            assert sizes[route.name] <= headroom[route.name]
        else:
            assert sizes[route.name] <= 1  # a probe, exempt from headroom


def weighted(spec: str, *weights: float) -> list[ProviderRoute]:
    """Like `routes`, with a weight for each provider in turn."""
    return [
        ProviderRoute(route.name, route.healthy, weight)
        for route, weight in zip(routes(spec), weights, strict=True)
    ]


@pytest.mark.parametrize(
    ("spec", "weights", "capacity", "expected"),
    [
        pytest.param("AB", (2, 1), {"A": 100, "B": 100}, 150, id="2:1: A's 100 bounds, 100 + 50"),
        pytest.param("AB", (1, 2), {"A": 100, "B": 100}, 150, id="1:2: B's 100 bounds"),
        pytest.param("AB", (2, 1), {"A": 100, "B": 10}, 31, id="2:1: B's 10 bounds, 21 + 10"),
        pytest.param("ABC", (3, 2, 1), {"A": 30, "B": 30, "C": 30}, 60, id="3:2:1: A's 30"),
        pytest.param("AB", (1000, 1), {"A": 100, "B": 0}, 100, id="a tiny weight: full, unused"),
        pytest.param("ABc", (2, 1, 1), {"A": 100, "B": 100, "C": 0}, 151, id="2:1 + a probe"),
        pytest.param("ABc", (3, 1, 1), {"A": 2, "B": 100, "C": 5}, 4, id="3:1 over 3 + a probe"),
        # Only one message fits (two would be 2:0, A over its 1): fewer than the healthy
        # providers, so the split places no probe and none is read for it.
        pytest.param("ABc", (3, 1, 1), {"A": 1, "B": 100, "C": 5}, 1, id="no room for a probe"),
        pytest.param("ab", (2, 1), {"A": 100, "B": 100}, 150, id="none healthy: by weight too"),
        pytest.param("A", (3,), {"A": 5}, 5, id="one provider: its headroom"),
    ],
)
def test_read_allowance_with_weights(spec, weights, capacity, expected):
    assert read_allowance(weighted(spec, *weights), capacity, {}) == expected


def fits(providers: list[ProviderRoute], total: int, headroom: dict[str, int], turn) -> bool:
    """Whether the split of `total` keeps every provider within its headroom (an unhealthy one
    beside a healthy one within its one probe)."""
    sizes = share_sizes(total, providers, turn)
    anyone_healthy = any(route.healthy for route in providers)
    return all(
        sizes[route.name] <= (headroom[route.name] if route.healthy or not anyone_healthy else 1)
        for route in providers
    )


def check_allowance(providers: list[ProviderRoute], headroom: dict[str, int]) -> None:
    """read_allowance's properties for one case (capacity = headroom, nothing in flight)."""
    allowance = read_allowance(providers, headroom, {})
    # No share past its headroom, for every number of messages the run may end up reading and
    # on a probe turn or not (which unhealthy one gets a probe does not matter here).
    for total in range(allowance + 1):
        for turn in (None, 0):
            assert fits(providers, total, headroom, turn), (total, turn)
    # Maximal: one more message would push a provider past its headroom.
    assert not fits(providers, allowance + 1, headroom, None)
    # Equal weights: never less than before weights (the smallest headroom times the healthy
    # providers, plus the probes when they can each take one).
    if len({route.weight for route in providers}) == 1:
        healthy = [route.name for route in providers if route.healthy]
        smallest = min(headroom[name] for name in healthy or headroom)
        before = len(healthy or providers) * smallest
        if healthy and smallest:
            before += len(providers) - len(healthy)
        assert allowance >= before


weighted_health = st.lists(
    st.tuples(st.booleans(), st.sampled_from([1, 2, 3])), min_size=1, max_size=5
)


@given(specs=weighted_health, data=st.data())
def test_the_allowance_fits_every_headroom_and_is_maximal(specs, data):
    """N = 1..5, any health, weights in {1, 2, 3}."""
    providers = [
        ProviderRoute(f"p{index}", healthy, weight) for index, (healthy, weight) in enumerate(specs)
    ]
    headroom = {
        route.name: data.draw(st.integers(min_value=0, max_value=40)) for route in providers
    }
    check_allowance(providers, headroom)


@pytest.mark.parametrize("count", [1, 2])
def test_the_allowance_fits_every_headroom_and_is_maximal_exhaustively(count):
    """N = 1, 2: every health combination, weight in {1, 2, 3} and headroom in 0..6."""
    for health in itertools.product((True, False), repeat=count):
        for weights in itertools.product((1, 2, 3), repeat=count):
            providers = [
                ProviderRoute(f"p{index}", healthy, weight)
                for index, (healthy, weight) in enumerate(zip(health, weights, strict=True))
            ]
            for rooms in itertools.product(range(7), repeat=count):
                check_allowance(
                    providers, {r.name: room for r, room in zip(providers, rooms, strict=True)}
                )


def test_the_allowance_stops_before_the_first_total_that_does_not_fit():
    """Largest remainder can give a provider less of a larger total (the Alabama paradox): at
    1:3:3, A gets one of 3 messages but none of 4. With no room at A, 4 fits and 3 does not;
    the run may read fewer than its allowance, so the allowance is 2, not 4 or more."""
    providers = weighted("ABC", 1, 3, 3)
    assert share_sizes(3, providers) == {"A": 1, "B": 1, "C": 1}  # .43/1.29/1.29
    assert share_sizes(4, providers) == {"A": 0, "B": 2, "C": 2}  # .57/1.71/1.71
    headroom = {"A": 0, "B": 100, "C": 100}
    assert fits(providers, 4, headroom, None)
    assert read_allowance(providers, headroom, {}) == 2


# --- sharing the allowance between queues ------------------------------------------------


@pytest.mark.parametrize(
    ("wants", "allowance", "expected"),
    [
        pytest.param([], 100, [], id="no queues"),
        pytest.param([10, 10], 0, [0, 0], id="no allowance"),
        pytest.param([10, 10], 100, [10, 10], id="enough for all"),
        pytest.param([100, 100], 100, [50, 50], id="equal split"),
        pytest.param([10, 100], 100, [10, 90], id="small queue's leftover to the deep one"),
        pytest.param([100, 100, 100], 100, [34, 33, 33], id="remainder to the earliest"),
        pytest.param([0, 100], 50, [0, 50], id="a queue that wants nothing"),
        pytest.param([1, 1, 1], 2, [1, 1, 0], id="fewer messages than queues"),
        pytest.param([5, 20, 40], 45, [5, 20, 20], id="water-filling"),
    ],
)
def test_divide_allowance_table(wants: list[int], allowance: int, expected: list[int]) -> None:
    assert divide_allowance(wants, allowance) == expected


def test_divide_allowance_refuses_negative_counts() -> None:
    with pytest.raises(ValueError, match="allowance"):
        divide_allowance([1], -1)
    with pytest.raises(ValueError, match="want"):
        divide_allowance([1, -1], 5)


@given(
    wants=st.lists(st.integers(min_value=0, max_value=1_000), max_size=8),
    allowance=st.integers(min_value=0, max_value=5_000),
)
def test_divide_allowance_is_max_min_fair(wants: list[int], allowance: int) -> None:
    grants = divide_allowance(wants, allowance)

    assert sum(grants) == min(allowance, sum(wants))
    assert all(0 <= grant <= want for grant, want in zip(grants, wants, strict=True))
    # Max-min fair: a queue left short got at least as much as every other queue minus one.
    for grant, want in zip(grants, wants, strict=True):
        if grant < want:
            assert all(other <= grant + 1 for other in grants)


# --- the whole read decision -------------------------------------------------------------


@pytest.mark.parametrize(
    ("queues", "allowance", "expected"),
    [
        pytest.param([QueueLevels(0, 0)], None, [[10]], id="empty queue: one short poll"),
        pytest.param([QueueLevels(25, 0)], None, [[10, 10, 10]], id="ceil(25/10) readers"),
        pytest.param([QueueLevels(25, 0)], 25, [[10, 10, 5]], id="allowance trims last"),
        pytest.param([QueueLevels(25, 0)], 0, [[]], id="no allowance: no reader"),
        pytest.param([QueueLevels(25, CAP)], None, [[]], id="queue at its in-flight cap"),
        pytest.param([QueueLevels(25, CAP - 4)], None, [[4]], id="room for four"),
        pytest.param([QueueLevels(1_000, 0)], None, [[10] * 5], id="max_readers bounds"),
        pytest.param(
            [QueueLevels(100, 0), QueueLevels(0, 0)],
            30,
            [[10, 10], [10]],
            id="allowance shared: the empty queue still gets its poll",
        ),
        pytest.param(
            [QueueLevels(100, 0), QueueLevels(100, 0)],
            15,
            [[8], [7]],
            id="scarce allowance split fairly",
        ),
        pytest.param(
            [QueueLevels(0, 0, skipped=True)], None, [[]], id="levels unread: not even a poll"
        ),
        pytest.param(
            [QueueLevels(100, 0, skipped=True), QueueLevels(100, 0)],
            30,
            [[], [10, 10, 10]],
            id="a skipped queue leaves its share to the others",
        ),
    ],
)
def test_plan_reads_table(
    queues: list[QueueLevels], allowance: int | None, expected: list[list[int]]
) -> None:
    plan = plan_reads(queues, max_in_flight=CAP, max_readers=5, allowance=allowance)

    assert plan == expected


@pytest.mark.parametrize(
    ("queues", "allowance", "expected"),
    [
        pytest.param([QueueLevels(0, 0)], None, [[30]], id="empty queue: one reader"),
        pytest.param([QueueLevels(25, 0)], None, [[30]], id="one reader takes 25 in 3 receives"),
        pytest.param([QueueLevels(1_000, 0)], None, [[30] * 5], id="5 readers x 3 receives"),
        pytest.param([QueueLevels(1_000, 0)], 100, [[30, 30, 30, 10]], id="allowance bounds"),
        pytest.param([QueueLevels(1_000, CAP - 40)], None, [[30, 10]], id="in-flight room"),
    ],
)
def test_plan_reads_with_several_receives_per_reader(
    queues: list[QueueLevels], allowance: int | None, expected: list[list[int]]
) -> None:
    # The intake of a run is not capped at max_readers x 10 per queue.
    plan = plan_reads(
        queues, max_in_flight=CAP, max_readers=5, receives_per_reader=3, allowance=allowance
    )

    assert plan == expected


@pytest.mark.parametrize(
    ("quota", "expected"),
    [(0, []), (7, [7]), (10, [10]), (25, [10, 10, 5]), (30, [10, 10, 10])],
)
def test_receive_sizes_table(quota: int, expected: list[int]) -> None:
    assert receive_sizes(quota) == expected


def test_plan_reads_refuses_bad_limits() -> None:
    with pytest.raises(ValueError, match="receives_per_reader"):
        plan_reads([QueueLevels(1, 0)], max_in_flight=CAP, max_readers=1, receives_per_reader=0)
    with pytest.raises(ValueError, match="max_readers"):
        plan_reads([QueueLevels(1, 0)], max_in_flight=CAP, max_readers=0)
    with pytest.raises(ValueError, match="depth"):
        plan_reads([QueueLevels(-1, 0)], max_in_flight=CAP, max_readers=1)


@given(
    levels=st.lists(
        st.tuples(st.integers(0, 2_000), st.integers(0, 1_200)), min_size=1, max_size=5
    ),
    max_in_flight=st.integers(0, 1_000),
    max_readers=st.integers(1, 20),
    per_reader=st.integers(1, 10),
    receives=st.integers(1, 20),
    allowance=st.none() | st.integers(0, 3_000),
)
def test_plan_reads_never_exceeds_a_limit(
    levels: list[tuple[int, int]],
    max_in_flight: int,
    max_readers: int,
    per_reader: int,
    receives: int,
    allowance: int | None,
) -> None:
    queues = [QueueLevels(depth, in_flight) for depth, in_flight in levels]

    plan = plan_reads(
        queues,
        max_in_flight=max_in_flight,
        max_readers=max_readers,
        per_reader=per_reader,
        receives_per_reader=receives,
        allowance=allowance,
    )

    assert len(plan) == len(queues)
    if allowance is not None:
        assert sum(map(sum, plan)) <= allowance
    for queue, quotas in zip(queues, plan, strict=True):
        assert len(quotas) <= max_readers
        assert all(1 <= quota <= per_reader * receives for quota in quotas)
        assert sum(quotas) <= max(max_in_flight - queue.in_flight, 0)


# --- routes_with_room: one provider at its limit does not stop the others ---------------------


@pytest.mark.parametrize(
    ("routes", "in_flight", "kept"),
    [
        ([("ses", True), ("sendgrid", True)], {"ses": 8}, ["sendgrid"]),
        ([("ses", True), ("sendgrid", True)], {"ses": 7}, ["ses", "sendgrid"]),
        # Every healthy one full: kept as they are (read_allowance then reads nothing).
        ([("ses", True), ("sendgrid", True)], {"ses": 8, "sendgrid": 9}, ["ses", "sendgrid"]),
        ([("ses", True), ("sendgrid", False)], {"ses": 8}, ["ses", "sendgrid"]),
        # An unhealthy provider keeps its probe, full or not.
        ([("a", True), ("b", True), ("c", False)], {"a": 8, "c": 8}, ["b", "c"]),
        ([("ses", False), ("sendgrid", False)], {"ses": 8}, ["ses", "sendgrid"]),
    ],
)
def test_routes_with_room(routes, in_flight, kept):
    providers = [ProviderRoute(name, healthy) for name, healthy in routes]
    capacity = {name: 8 for name, _ in routes}
    assert [r.name for r in routes_with_room(providers, capacity, in_flight)] == kept


def test_with_a_full_provider_left_out_the_others_read_their_headroom():
    providers = [ProviderRoute("ses", True), ProviderRoute("sendgrid", True)]
    capacity, in_flight = {"ses": 8, "sendgrid": 8}, {"ses": 8, "sendgrid": 2}
    assert read_allowance(providers, capacity, in_flight) == 0  # the split would feed ses
    assert (
        read_allowance(routes_with_room(providers, capacity, in_flight), capacity, in_flight) == 6
    )
