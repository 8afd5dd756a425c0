"""Step 3 and 5 of the pipeline: split what was read between the providers, then into batches.

Pure decisions (DESIGN §5.4, §5.5): no I/O, no clock, no randomness. The pipeline task gathers
the messages and each provider's health, calls `plan_split`, and sends each share as
`batches(share, batch_size)` of `send_batch` tasks on that provider's queue.

The split rules, generalised from the original's two providers to N, with weights:

- The healthy providers share the messages in proportion to their `weight` (1 each by default,
  which is the original's equal split). Largest-remainder apportionment: each gets the whole
  part of its exact quota, and the messages left over go one each to the largest fractional
  parts, ties to the earliest in the order given. So a share is always within one message of
  its exact quota, and with equal weights the remainder goes one message each to the earliest
  healthy providers, as before weights existed.
- While at least one provider is healthy, each unhealthy provider gets exactly one message, a
  probe, so that its recovery can be observed; the healthy ones take the rest.
- Probes never starve the healthy providers: a probe is placed only from what is left once the
  run has one message per healthy provider. With fewer messages than that, the healthy
  providers take them all and no probe goes out this run (with equal weights a healthy
  provider then never gets less than an unhealthy one; with unequal weights a healthy provider
  whose quota is below one message may get none, like any small quota). With probes to spare
  for only some unhealthy providers, the earliest in the order get them.
- When no provider is healthy, the messages are split among all of them by weight, the same
  largest-remainder apportionment (equally with equal weights: nobody is known to be well, so
  the risk is spread as the operator spreads the traffic, not onto a favourite).
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

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ProviderRoute:
    """A provider as the split sees it: its name (its Celery queue), its current health, and
    its `weight` (`providers.<name>.weight`): its share of the traffic relative to the others'.

    Raises ValueError when `weight` is not a finite number above 0.
    """

    name: str
    healthy: bool
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise ValueError(
                f"weight of {self.name!r} must be a finite number > 0, got {self.weight}"
            )


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

    Returns a dict keyed by provider name, in the order given, whose values sum to `total`:
    the healthy providers' shares by weight (largest remainder), one probe per unhealthy one
    while any is healthy, everyone's by weight when none is. Raises ValueError when
    `providers` is empty, a name repeats, or `total` is negative.
    """
    _check_providers(providers)
    if total < 0:
        raise ValueError(f"total must be >= 0, got {total}")

    healthy = [route for route in providers if route.healthy]
    unhealthy = [route.name for route in providers if not route.healthy]
    sizes = dict.fromkeys((route.name for route in providers), 0)

    if not healthy:
        # Nobody is known to be well: spread the risk by weight rather than pick a favourite.
        sizes.update(_weighted_shares(total, providers))
        return sizes

    # Probes only come out of what is left once the run has one message per healthy provider
    # (whatever the weights), but a probe turn has at least one whenever there is a message.
    # The `probe_turn`-th probe turn starts with the next unhealthy provider, so that a scarce
    # probe goes to each in turn.
    if probe_turn is not None:
        start = probe_turn % len(unhealthy) if unhealthy else 0
        unhealthy = unhealthy[start:] + unhealthy[:start]
    probes = min(
        len(unhealthy), max(total - len(healthy), 1 if probe_turn is not None else 0), total
    )
    for name in unhealthy[:probes]:
        sizes[name] = 1
    sizes.update(_weighted_shares(total - probes, healthy))
    return sizes


def plan_split(
    messages: Sequence[T], providers: Sequence[ProviderRoute], probe_turn: int | None = None
) -> dict[str, list[T]]:
    """Split `messages` between `providers` by health and weight (module docstring).

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


def _weighted_shares(total: int, routes: Sequence[ProviderRoute]) -> dict[str, int]:
    """`total` apportioned over `routes` by weight, largest remainder first, ties to the
    earliest route.

    Exact, in integers: a float weight is a binary fraction, so every weight times the largest
    denominator is a whole number with the same ratios. Each quota is `total * weight / whole`:
    its whole part is the route's share, and the messages left over go to the largest
    fractional parts (all over the same denominator `whole`, so compared as integers). Equal
    weights give equal quotas, and the remainder goes to the earliest routes.
    """
    weights = integer_weights(routes)
    whole = sum(weights)
    parts = [divmod(total * weight, whole) for weight in weights]
    shares = [share for share, _ in parts]
    left = total - sum(shares)
    by_remainder = sorted(range(len(routes)), key=lambda index: (-parts[index][1], index))
    for index in by_remainder[:left]:
        shares[index] += 1
    return {route.name: share for route, share in zip(routes, shares, strict=True)}


def integer_weights(routes: Sequence[ProviderRoute]) -> list[int]:
    """The routes' weights as whole numbers in the same ratios, exactly (see `_weighted_shares`)."""
    ratios = [float(route.weight).as_integer_ratio() for route in routes]
    # The denominators are powers of two: the largest is a multiple of all of them.
    scale = max(denominator for _, denominator in ratios)
    return [numerator * (scale // denominator) for numerator, denominator in ratios]


def _check_providers(providers: Sequence[ProviderRoute]) -> None:
    if not providers:
        raise ValueError("the split needs at least one provider")
    names = [route.name for route in providers]
    if len(set(names)) != len(names):
        raise ValueError(f"provider names must be unique, got {names}")
