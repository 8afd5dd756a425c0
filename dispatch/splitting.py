"""Step 3 and 5 of the pipeline: split what was read between the providers, then into batches.

Pure decisions (DESIGN §5.4, §5.5): no I/O, no clock, no randomness. The pipeline task gathers
the messages and each provider's health, calls `plan_split`, and sends each share as
`batches(share, batch_size)` of `send_batch` tasks on that provider's queue.

The split rules, generalised from the original's two providers to N:

- Every healthy provider gets an equal share; a remainder goes one message each to the
  earliest healthy providers in the order given.
- While at least one provider is healthy, each unhealthy provider gets exactly one message, a
  probe, so that its recovery can be observed; the healthy ones take the rest.
- Probes never starve the healthy providers: every healthy provider is served one message
  before any probe is placed. With fewer messages than that, the healthy providers take them
  all and no probe goes out this run (a healthy provider never gets less than an unhealthy
  one). With probes to spare for only some unhealthy providers, the earliest in the order get
  them.
- When no provider is healthy, the messages are split equally among all of them.
- At low traffic the rule above would never place a probe (one message a run goes to a
  healthy provider), and an unhealthy provider would never be seen to recover. So on a
  *probe turn* (every K-th run, `is_probe_turn`; `probe_turn` counts them) one unhealthy
  provider, each in turn, gets its probe even when the healthy providers are not all served
  first.

Fairness over time is the caller's job: "earliest in the order" decides who gets a remainder
message and who gets a scarce probe, so the pipeline should rotate the provider order between
runs (`rotate_routes`) rather than always pass it in configuration order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ProviderRoute:
    """A provider as the split sees it: its name (its Celery queue) and its current health."""

    name: str
    healthy: bool


def rotate_routes(routes: Sequence[ProviderRoute], turn: int) -> list[ProviderRoute]:
    """Return `routes` rotated left by `turn` positions (any integer, taken modulo the length).

    The pipeline passes a counter that advances every run, so that remainders and scarce probes
    go to each provider in turn instead of always to the first configured one. An empty
    sequence gives an empty list.
    """
    if not routes:
        return []
    start = turn % len(routes)
    return [*routes[start:], *routes[:start]]


def is_probe_turn(run_number: int, every: int) -> bool:
    """Whether run `run_number` is a probe turn: one run in `every` (`every` >= 2)."""
    return run_number % every == 0


def share_sizes(
    total: int, providers: Sequence[ProviderRoute], probe_turn: int | None = None
) -> dict[str, int]:
    """How many of `total` messages each provider gets under the split rules (module docstring).

    Returns a dict keyed by provider name, in the order given, whose values sum to `total`.
    Raises ValueError when `providers` is empty, a name repeats, or `total` is negative.
    """
    _check_providers(providers)
    if total < 0:
        raise ValueError(f"total must be >= 0, got {total}")

    healthy = [route.name for route in providers if route.healthy]
    unhealthy = [route.name for route in providers if not route.healthy]
    sizes = dict.fromkeys((route.name for route in providers), 0)

    if not healthy:
        # Nobody is known to be well: spread the risk evenly rather than pick a favourite.
        sizes.update(_equal_shares(total, [route.name for route in providers]))
        return sizes

    # Probes only come out of what is left once every healthy provider has one message, but
    # a probe turn has at least one whenever there is a message. The `probe_turn`-th probe turn
    # starts with the next unhealthy provider, so that a scarce probe goes to each in turn.
    if probe_turn is not None:
        start = probe_turn % len(unhealthy) if unhealthy else 0
        unhealthy = unhealthy[start:] + unhealthy[:start]
    probes = min(
        len(unhealthy), max(total - len(healthy), 1 if probe_turn is not None else 0), total
    )
    for name in unhealthy[:probes]:
        sizes[name] = 1
    sizes.update(_equal_shares(total - probes, healthy))
    return sizes


def plan_split(
    messages: Sequence[T], providers: Sequence[ProviderRoute], probe_turn: int | None = None
) -> dict[str, list[T]]:
    """Split `messages` between `providers` by health (rules in the module docstring).

    Returns a dict keyed by every provider's name, in the order given; a provider with no
    messages maps to an empty list. Every message appears in exactly one share, and each share
    keeps the messages in their original order (shares are consecutive runs of `messages`,
    taken in provider order).

    Raises ValueError when `providers` is empty or two providers share a name.
    """
    sizes = share_sizes(len(messages), providers, probe_turn)
    plan: dict[str, list[T]] = {}
    start = 0
    for name, size in sizes.items():
        plan[name] = list(messages[start : start + size])
        start += size
    return plan


def batches(items: Sequence[T], batch_size: int) -> list[list[T]]:
    """Cut `items` into consecutive batches of `batch_size` items; the last may be shorter.

    Order is kept; no items gives no batches. Raises ValueError when `batch_size` < 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [list(items[start : start + batch_size]) for start in range(0, len(items), batch_size)]


def batches_within(
    items: Sequence[T], batch_size: int, max_total: int, size_of: Callable[[T], int]
) -> list[list[T]]:
    """Like `batches`, but each batch's `size_of` sum also stays within `max_total`.

    Consecutive and in order; an item larger than `max_total` on its own still gets a batch of
    its own (the caller decides whether such an item may exist). Raises ValueError when
    `batch_size` < 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    result: list[list[T]] = []
    current: list[T] = []
    total = 0
    for item in items:
        size = size_of(item)
        if current and (len(current) == batch_size or total + size > max_total):
            result.append(current)
            current, total = [], 0
        current.append(item)
        total += size
    if current:
        result.append(current)
    return result


def _equal_shares(total: int, names: Sequence[str]) -> dict[str, int]:
    """`total` split as evenly as possible over `names`, remainder to the earliest names."""
    base, remainder = divmod(total, len(names))
    return {name: base + (1 if index < remainder else 0) for index, name in enumerate(names)}


def _check_providers(providers: Sequence[ProviderRoute]) -> None:
    if not providers:
        raise ValueError("the split needs at least one provider")
    names = [route.name for route in providers]
    if len(set(names)) != len(names):
        raise ValueError(f"provider names must be unique, got {names}")
