"""The split between providers and the cut into batches (DESIGN §5.4, §5.5), as tables."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatch.splitting import (
    ProviderRoute,
    batches,
    is_probe_turn,
    plan_split,
    rotate_routes,
    share_sizes,
)


def routes(spec: str) -> list[ProviderRoute]:
    """'AbC' -> A healthy, b unhealthy, C healthy (upper case: healthy)."""
    return [ProviderRoute(name=letter.upper(), healthy=letter.isupper()) for letter in spec]


# (providers, message count, expected share sizes in provider order)
SPLIT_TABLE = [
    # The original's rules with two providers.
    pytest.param("AB", 10, [5, 5], id="both healthy: even split"),
    pytest.param("AB", 11, [6, 5], id="both healthy: remainder to the first"),
    pytest.param("Ab", 10, [9, 1], id="second unhealthy: one probe, rest to the healthy"),
    pytest.param("aB", 10, [1, 9], id="first unhealthy: one probe, rest to the healthy"),
    pytest.param("ab", 10, [5, 5], id="both unhealthy: even split"),
    pytest.param("ab", 11, [6, 5], id="both unhealthy: remainder to the first"),
    pytest.param("Ab", 1, [1, 0], id="single message: to the healthy one"),
    pytest.param("aB", 1, [0, 1], id="single message: to the healthy one, listed second"),
    pytest.param("AB", 1, [1, 0], id="single message, both healthy: to the first"),
    pytest.param("ab", 1, [1, 0], id="single message, none healthy: to the first"),
    pytest.param("Ab", 2, [1, 1], id="two messages: one to the healthy, one probe"),
    pytest.param("AB", 0, [0, 0], id="no messages"),
    pytest.param("Ab", 0, [0, 0], id="no messages, one unhealthy"),
    # One provider.
    pytest.param("A", 7, [7], id="only provider, healthy"),
    pytest.param("a", 7, [7], id="only provider, unhealthy: it still gets everything"),
    # N providers.
    pytest.param("ABC", 9, [3, 3, 3], id="three healthy"),
    pytest.param("ABC", 10, [4, 3, 3], id="three healthy, remainder 1"),
    pytest.param("ABC", 11, [4, 4, 3], id="three healthy, remainder 2"),
    pytest.param("AbC", 10, [5, 1, 4], id="three, middle unhealthy"),
    pytest.param("Abc", 10, [8, 1, 1], id="three, two unhealthy: a probe each"),
    pytest.param("abc", 10, [4, 3, 3], id="three unhealthy: even split"),
    pytest.param("ABcD", 12, [4, 4, 1, 3], id="four, one unhealthy"),
    pytest.param("AbCd", 12, [5, 1, 5, 1], id="four, two unhealthy"),
    pytest.param("aBcd", 12, [1, 9, 1, 1], id="four, one healthy"),
    pytest.param("abcd", 13, [4, 3, 3, 3], id="four unhealthy"),
    # Fewer messages than providers: every healthy provider is served before any probe.
    pytest.param("AbC", 1, [1, 0, 0], id="three, one message: first healthy"),
    pytest.param("AbC", 2, [1, 0, 1], id="three, two messages: healthy ones before the probe"),
    pytest.param("AbC", 3, [1, 1, 1], id="three, three messages: now the probe"),
    pytest.param("Abc", 2, [1, 1, 0], id="two probes wanted, one to spare: earliest gets it"),
    pytest.param("abC", 2, [1, 0, 1], id="probe to the earliest unhealthy"),
    pytest.param("ABcd", 3, [1, 1, 1, 0], id="four, three messages"),
    pytest.param("abcd", 2, [1, 1, 0, 0], id="four unhealthy, two messages"),
]


@pytest.mark.parametrize(("spec", "count", "expected"), SPLIT_TABLE)
def test_split_rules_table(spec: str, count: int, expected: list[int]) -> None:
    providers = routes(spec)
    messages = list(range(count))

    plan = plan_split(messages, providers)

    assert [len(plan[route.name]) for route in providers] == expected
    assert share_sizes(count, providers) == dict(zip(spec.upper(), expected, strict=True))


def test_shares_keep_message_order_and_are_consecutive() -> None:
    plan = plan_split(list("abcdefghij"), routes("AbC"))

    assert plan == {"A": list("abcde"), "B": ["f"], "C": list("ghij")}


def test_plan_lists_every_provider_in_the_order_given() -> None:
    plan = plan_split([], routes("CaB"))

    assert list(plan) == ["C", "A", "B"]
    assert plan == {"C": [], "A": [], "B": []}


def test_plan_copies_shares_into_new_lists() -> None:
    messages = ("m1", "m2")

    plan = plan_split(messages, routes("A"))

    assert plan == {"A": ["m1", "m2"]}
    assert isinstance(plan["A"], list)


def test_no_providers_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one provider"):
        plan_split([1, 2, 3], [])


def test_duplicate_provider_names_are_an_error() -> None:
    with pytest.raises(ValueError, match="unique"):
        plan_split([1], [ProviderRoute("ses", True), ProviderRoute("ses", False)])


def test_negative_total_is_an_error() -> None:
    with pytest.raises(ValueError, match="total"):
        share_sizes(-1, routes("A"))


@pytest.mark.parametrize(
    ("turn", "expected"),
    [(0, "ABC"), (1, "BCA"), (2, "CAB"), (3, "ABC"), (4, "BCA"), (-1, "CAB")],
)
def test_rotate_routes(turn: int, expected: str) -> None:
    assert [route.name for route in rotate_routes(routes("ABC"), turn)] == list(expected)


def test_rotate_no_routes() -> None:
    assert rotate_routes([], 5) == []


def test_rotation_spreads_the_remainder_over_runs() -> None:
    providers = routes("ABC")
    received = dict.fromkeys("ABC", 0)
    for turn in range(3):
        for name, share in plan_split([0], rotate_routes(providers, turn)).items():
            received[name] += len(share)
    assert received == {"A": 1, "B": 1, "C": 1}


@pytest.mark.parametrize(
    ("count", "size", "expected"),
    [
        (0, 3, []),
        (1, 3, [[0]]),
        (3, 3, [[0, 1, 2]]),
        (4, 3, [[0, 1, 2], [3]]),
        (7, 3, [[0, 1, 2], [3, 4, 5], [6]]),
        (3, 1, [[0], [1], [2]]),
        (2, 10, [[0, 1]]),
    ],
)
def test_batches_table(count: int, size: int, expected: list[list[int]]) -> None:
    assert batches(list(range(count)), size) == expected


@pytest.mark.parametrize("size", [0, -1])
def test_batch_size_below_one_is_an_error(size: int) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        batches([1, 2], size)


# --- properties --------------------------------------------------------------------------

provider_lists = st.lists(st.booleans(), min_size=1, max_size=8).map(
    lambda health: [ProviderRoute(f"p{index}", healthy) for index, healthy in enumerate(health)]
)


@given(providers=provider_lists, count=st.integers(min_value=0, max_value=300))
def test_every_message_lands_in_exactly_one_share_in_order(
    providers: list[ProviderRoute], count: int
) -> None:
    messages = list(range(count))

    plan = plan_split(messages, providers)

    assert list(plan) == [route.name for route in providers]
    # Shares are consecutive runs in provider order, so concatenating them gives the input.
    assert [message for share in plan.values() for message in share] == messages


@given(providers=provider_lists, count=st.integers(min_value=0, max_value=300))
def test_healthy_shares_differ_by_at_most_one(providers: list[ProviderRoute], count: int) -> None:
    plan = plan_split(list(range(count)), providers)

    healthy = [len(plan[route.name]) for route in providers if route.healthy]
    everyone = [len(share) for share in plan.values()]
    if healthy:
        assert max(healthy) - min(healthy) <= 1
    else:
        assert max(everyone) - min(everyone) <= 1


@given(providers=provider_lists, count=st.integers(min_value=0, max_value=300))
def test_probes_while_any_provider_is_healthy(providers: list[ProviderRoute], count: int) -> None:
    plan = plan_split(list(range(count)), providers)

    healthy = [len(plan[route.name]) for route in providers if route.healthy]
    unhealthy = [len(plan[route.name]) for route in providers if not route.healthy]
    if not healthy:
        return
    assert all(size <= 1 for size in unhealthy)
    # Probes never starve the healthy: none gets less than any unhealthy provider...
    assert min(healthy) >= max(unhealthy, default=0)
    # ...and every unhealthy provider is probed once there are enough messages.
    if count >= len(providers):
        assert all(size == 1 for size in unhealthy)


@given(
    items=st.lists(st.integers(), max_size=100),
    size=st.integers(min_value=1, max_value=20),
)
def test_batches_cover_items_in_order_within_the_size(items: list[int], size: int) -> None:
    cut = batches(items, size)

    assert [item for batch in cut for item in batch] == items
    assert all(1 <= len(batch) <= size for batch in cut)
    assert all(len(batch) == size for batch in cut[:-1])


# --- low traffic: probe turns ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "routes", "expected"),
    [
        # One message, one healthy and one unhealthy provider: the probe takes it.
        (1, [("ses", True), ("sendgrid", False)], {"ses": 0, "sendgrid": 1}),
        (2, [("ses", True), ("sendgrid", False)], {"ses": 1, "sendgrid": 1}),
        # Enough messages for the usual rule: a probe turn changes nothing.
        (9, [("ses", True), ("sendgrid", False)], {"ses": 8, "sendgrid": 1}),
        # One probe for the first unhealthy provider in the (rotated) order, not one each.
        (1, [("a", True), ("b", False), ("c", False)], {"a": 0, "b": 1, "c": 0}),
        (2, [("a", True), ("b", True), ("c", False)], {"a": 1, "b": 0, "c": 1}),
        (0, [("ses", True), ("sendgrid", False)], {"ses": 0, "sendgrid": 0}),
        # Nobody healthy, or everybody: no probes to place.
        (1, [("ses", False), ("sendgrid", False)], {"ses": 1, "sendgrid": 0}),
        (1, [("ses", True), ("sendgrid", True)], {"ses": 1, "sendgrid": 0}),
    ],
)
def test_a_probe_turn_places_a_probe_even_at_low_traffic(total, routes, expected):
    providers = [ProviderRoute(name, healthy) for name, healthy in routes]
    assert share_sizes(total, providers, probe_turn=0) == expected


@pytest.mark.parametrize("total", [1, 2])
def test_outside_a_probe_turn_the_healthy_are_served_first(total):
    providers = [ProviderRoute("ses", True), ProviderRoute("sendgrid", False)]
    assert share_sizes(total, providers)["sendgrid"] == total - 1


@pytest.mark.parametrize("n", range(1, 6))
@pytest.mark.parametrize("total", range(0, 12))
def test_a_probe_turn_still_places_every_message_once_and_at_most_one_per_unhealthy(n, total):
    for healthy_count in range(n + 1):
        providers = [ProviderRoute(f"p{i}", i < healthy_count) for i in range(n)]
        sizes = share_sizes(total, providers, probe_turn=total)
        assert sum(sizes.values()) == total
        if 0 < healthy_count < n:
            assert all(sizes[r.name] <= 1 for r in providers if not r.healthy)
            assert total == 0 or any(sizes[r.name] == 1 for r in providers if not r.healthy)


@pytest.mark.parametrize(
    ("run", "every", "turn"), [(0, 3, True), (1, 3, False), (3, 3, True), (7, 7, True)]
)
def test_is_probe_turn(run, every, turn):
    assert is_probe_turn(run, every) is turn


@pytest.mark.parametrize("every", [2, 3, 4])
@pytest.mark.parametrize("unhealthy", [1, 2, 3])
def test_at_low_traffic_every_unhealthy_provider_gets_probes_in_turn(every, unhealthy):
    """One message a run, one healthy provider: over many runs each unhealthy provider is
    probed, whatever ``every`` and the number of providers (sharing a factor or not)."""
    base = [ProviderRoute("healthy", True)] + [
        ProviderRoute(f"down{i}", False) for i in range(unhealthy)
    ]
    probed: dict[str, int] = {}
    for run in range(every * unhealthy * 1 * (unhealthy + 1) * 4):
        routes = rotate_routes(base, run)
        turn = run // every if is_probe_turn(run, every) else None
        for name, size in share_sizes(1, routes, turn).items():
            if size and name != "healthy":
                probed[name] = probed.get(name, 0) + 1
    assert set(probed) == {f"down{i}" for i in range(unhealthy)}, probed
    assert max(probed.values()) - min(probed.values()) <= 1, probed


# --- weights ------------------------------------------------------------------------------


def weighted(spec: str, *weights: float) -> list[ProviderRoute]:
    """Like `routes`, with a weight for each provider in turn."""
    return [
        ProviderRoute(route.name, route.healthy, weight)
        for route, weight in zip(routes(spec), weights, strict=True)
    ]


# (providers, weights, message count, probe turn, expected share sizes in provider order)
WEIGHTED_TABLE = [
    pytest.param("AB", (2, 1), 3, None, [2, 1], id="2:1 over 3: exact"),
    pytest.param("AB", (2, 1), 10, None, [7, 3], id="2:1 over 10: 6.67/3.33, A's .67 wins"),
    pytest.param("AB", (2, 1), 11, None, [7, 4], id="2:1 over 11: 7.33/3.67, B's .67 wins"),
    pytest.param("AB", (1, 2), 10, None, [3, 7], id="1:2 over 10"),
    pytest.param("AB", (2, 1), 1, None, [1, 0], id="2:1, one message: the heavier"),
    pytest.param("AB", (1, 2), 1, None, [0, 1], id="1:2, one message: the heavier, listed 2nd"),
    pytest.param("AB", (3, 1), 2, None, [2, 0], id="3:1 over 2: a tie of .5, to the first"),
    pytest.param("BA", (1, 3), 2, None, [1, 1], id="1:3 over 2: a tie of .5, to the first"),
    pytest.param("ABC", (1, 1, 2), 2, None, [1, 0, 1], id="1:1:2 over 2: tie to the earliest"),
    pytest.param("ABC", (2, 1, 1), 10, None, [5, 3, 2], id="2:1:1 over 10: 5/2.5/2.5"),
    pytest.param("ABC", (3, 2, 1), 11, None, [5, 4, 2], id="3:2:1 over 11: 5.5/3.67/1.83"),
    pytest.param("AB", (0.5, 1.5), 10, None, [3, 7], id="fractional weights: 1:3"),
    pytest.param("AB", (0.1, 0.2), 10, None, [3, 7], id="0.1:0.2 is exactly 1:2"),
    pytest.param("AB", (1000, 1), 10, None, [10, 0], id="a tiny weight gets nothing of 10"),
    pytest.param("AB", (2, 2), 11, None, [6, 5], id="equal weights other than 1: even split"),
    # With probes: the healthy share what the probes leave, by weight.
    pytest.param("ABc", (2, 1, 5), 10, None, [6, 3, 1], id="2:1 + probe over 10"),
    pytest.param("ABc", (2, 1, 5), 11, None, [7, 3, 1], id="2:1 + probe over 11"),
    pytest.param("ABc", (2, 1, 1), 3, None, [1, 1, 1], id="2:1 + probe over 3: 1.33/0.67"),
    pytest.param("ABc", (3, 1, 1), 3, None, [2, 0, 1], id="3:1 + probe over 3: B's quota .5"),
    pytest.param("ABc", (2, 1, 1), 2, None, [1, 1, 0], id="2:1, two messages: no probe"),
    pytest.param("AbCd", (3, 1, 1, 1), 10, None, [6, 1, 2, 1], id="3:1 + two probes over 10"),
    pytest.param("aB", (5, 1), 10, None, [1, 9], id="a heavy unhealthy one still gets one"),
    # Probe turns: the probe comes first even at low traffic; the weights split the rest.
    pytest.param("ABc", (2, 1, 1), 1, 0, [0, 0, 1], id="probe turn, one message: the probe"),
    pytest.param("ABc", (2, 1, 1), 2, 0, [1, 0, 1], id="probe turn, two: probe, then the heavier"),
    pytest.param("ABc", (1, 2, 1), 2, 0, [0, 1, 1], id="probe turn, two: the heavier is second"),
    pytest.param("ABcd", (2, 1, 1, 1), 2, 1, [1, 0, 0, 1], id="probe turn 1: the second probe"),
    pytest.param("ABc", (2, 1, 1), 10, 0, [6, 3, 1], id="probe turn, enough: as usual"),
    # No healthy provider: everyone shares by weight too.
    pytest.param("ab", (2, 1), 10, None, [7, 3], id="none healthy, 2:1 over 10"),
    pytest.param("ab", (2, 1), 11, None, [7, 4], id="none healthy, 2:1 over 11"),
    pytest.param("abc", (1, 2, 3), 6, 0, [1, 2, 3], id="none healthy on a probe turn: by weight"),
]


@pytest.mark.parametrize(("spec", "weights", "count", "turn", "expected"), WEIGHTED_TABLE)
def test_weighted_split_table(spec, weights, count, turn, expected):
    providers = weighted(spec, *weights)

    plan = plan_split(list(range(count)), providers, turn)

    assert [len(plan[route.name]) for route in providers] == expected
    assert share_sizes(count, providers, turn) == dict(zip(spec.upper(), expected, strict=True))


@pytest.mark.parametrize("weight", [0, -1, float("inf"), float("nan")])
def test_a_weight_is_a_finite_number_above_zero(weight):
    with pytest.raises(ValueError, match="weight of 'ses'"):
        ProviderRoute("ses", True, weight)


def test_rotation_moves_a_weighted_tie_between_runs():
    """2:1:1 over two messages a run: the heavier one gets one each run (its quota is 1), and
    the other (a tie of .5) goes to whichever lighter one comes first in the rotated order."""
    providers = weighted("ABC", 2, 1, 1)
    received = dict.fromkeys("ABC", 0)
    for turn in range(3):
        for name, size in share_sizes(2, rotate_routes(providers, turn)).items():
            received[name] += size
    assert received == {"A": 3, "B": 2, "C": 1}


def today(total: int, providers: list[ProviderRoute], probe_turn: int | None) -> dict[str, int]:
    """The split before weights (an equal share each), kept as the reference that equal weights
    must reproduce exactly."""

    def equal(total: int, names: list[str]) -> dict[str, int]:
        base, remainder = divmod(total, len(names))
        return {name: base + (1 if index < remainder else 0) for index, name in enumerate(names)}

    healthy = [route.name for route in providers if route.healthy]
    unhealthy = [route.name for route in providers if not route.healthy]
    sizes = dict.fromkeys((route.name for route in providers), 0)
    if not healthy:
        sizes.update(equal(total, [route.name for route in providers]))
        return sizes
    if probe_turn is not None:
        start = probe_turn % len(unhealthy) if unhealthy else 0
        unhealthy = unhealthy[start:] + unhealthy[:start]
    probes = min(
        len(unhealthy), max(total - len(healthy), 1 if probe_turn is not None else 0), total
    )
    for name in unhealthy[:probes]:
        sizes[name] = 1
    sizes.update(equal(total - probes, healthy))
    return sizes


def check_split(providers: list[ProviderRoute], total: int, probe_turn: int | None) -> None:
    """Every property of the split, for one case."""
    sizes = share_sizes(total, providers, probe_turn)

    # Every message placed exactly once, no share negative, every provider listed in order.
    assert list(sizes) == [route.name for route in providers]
    assert sum(sizes.values()) == total
    assert all(size >= 0 for size in sizes.values())

    healthy = [route for route in providers if route.healthy]
    unhealthy = [route for route in providers if not route.healthy]
    if healthy:
        # At most one per unhealthy provider (a probe), as many probes as the rules say.
        assert all(sizes[route.name] <= 1 for route in unhealthy)
        spare = max(total - len(healthy), 1 if probe_turn is not None else 0)
        assert sum(sizes[route.name] for route in unhealthy) == min(len(unhealthy), spare, total)

    # The sharing providers (the healthy ones, or all when none is) take what is left by
    # weight: each within 1 of its exact quota, and largest remainders rounded up first,
    # ties to the earliest. In integers: the test weights are multiples of 0.5, so each
    # quota is pool * w / whole with w = 2 * weight.
    sharing = healthy or providers
    pool = sum(sizes[route.name] for route in sharing)
    doubled = [int(route.weight * 2) for route in sharing]
    assert doubled == [route.weight * 2 for route in sharing]
    whole = sum(doubled)
    quotas = [divmod(pool * w, whole) for w in doubled]  # (whole part, fraction * whole)
    shares = [sizes[route.name] for route in sharing]
    for share, w in zip(shares, doubled, strict=True):
        assert abs(share * whole - pool * w) < whole  # within 1 of the quota
    up = [i for i, share in enumerate(shares) if share > quotas[i][0]]
    down = [i for i, share in enumerate(shares) if share == quotas[i][0]]
    for i in up:
        for j in down:
            assert (quotas[i][1], -i) > (quotas[j][1], -j), (sizes, i, j)

    # Equal weights (whatever their value): exactly the split before weights existed.
    if len({route.weight for route in providers}) == 1:
        assert sizes == today(total, providers, probe_turn)


def route_lists(count: int, weights=(1, 2, 3)):
    """Every list of `count` providers: every health combination times every weight in
    `weights` for each."""
    for health in itertools.product((True, False), repeat=count):
        for weight in itertools.product(weights, repeat=count):
            yield [
                ProviderRoute(f"p{index}", healthy, w)
                for index, (healthy, w) in enumerate(zip(health, weight, strict=True))
            ]


@pytest.mark.parametrize("count", range(1, 5))
def test_weighted_split_properties_exhaustively(count):
    """N = 1..4: every health combination, every weight in {1, 2, 3}, small totals (fewer and
    more messages than providers), on a probe turn and not."""
    for providers in route_lists(count):
        for total in (*range(0, 2 * count + 2), 13, 29):
            for probe_turn in (None, total):
                check_split(providers, total, probe_turn)
        messages = list(range(7))
        plan = plan_split(messages, providers)
        assert [message for share in plan.values() for message in share] == messages


def test_weighted_split_properties_for_five_providers():
    """N = 5: every health combination, every weight in {1, 2, 3}, a few totals."""
    for providers in route_lists(5):
        for total in (3, 11):
            check_split(providers, total, None)
        check_split(providers, 4, 1)


weighted_lists = st.lists(
    st.tuples(st.booleans(), st.sampled_from([1, 2, 3, 0.5, 1.5, 7])), min_size=1, max_size=5
).map(
    lambda specs: [
        ProviderRoute(f"p{index}", healthy, weight) for index, (healthy, weight) in enumerate(specs)
    ]
)


@given(
    providers=weighted_lists,
    total=st.integers(min_value=0, max_value=500),
    probe_turn=st.none() | st.integers(min_value=0, max_value=10),
)
def test_weighted_split_properties(providers, total, probe_turn):
    check_split(providers, total, probe_turn)
