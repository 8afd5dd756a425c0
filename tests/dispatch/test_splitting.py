"""The split between providers and the cut into batches (DESIGN §5.4, §5.5), as tables."""

from __future__ import annotations

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
