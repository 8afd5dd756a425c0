"""Operator controls over providers: drain, resume, reset health (admin and commands)."""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.utils import timezone

from dispatch.models import ProviderControl


class UnknownProvider(ValueError):
    pass


def provider_names() -> list[str]:
    """Every configured provider's name (enabled or not), in configuration order."""
    return list(settings.GOMAIL.providers)


def _control(name: str) -> ProviderControl:
    if name not in provider_names():
        raise UnknownProvider(f"no provider named {name!r}")
    control, _ = ProviderControl.objects.get_or_create(name=name)
    return control


def ensure_controls() -> list[ProviderControl]:
    """One control row per configured provider, in configuration order."""
    return [_control(name) for name in provider_names()]


def set_drained(name: str, drained: bool, by: str) -> ProviderControl:
    """Drain (``True``: no traffic, not even probes) or resume a provider."""
    control = _control(name)
    control.drained = drained
    control.changed_by = by
    control.changed_at = timezone.now()
    control.save()
    return control


def request_health_reset(name: str, by: str) -> ProviderControl:
    control = _control(name)
    control.reset_requested_at = timezone.now()
    control.changed_by = by
    control.changed_at = control.reset_requested_at
    control.save()
    return control


def drained_providers(names: Iterable[str]) -> set[str]:
    return set(
        ProviderControl.objects.filter(name__in=list(names), drained=True).values_list(
            "name", flat=True
        )
    )


def take_reset_requests(names: Iterable[str]) -> set[str]:
    """The providers whose health reset was requested; the requests are consumed."""
    requested = dict(
        ProviderControl.objects.filter(
            name__in=list(names), reset_requested_at__isnull=False
        ).values_list("name", "reset_requested_at")
    )
    taken = set()
    for name, at in requested.items():
        # Only the request we saw: a newer one (made meanwhile) stays for the next run.
        if ProviderControl.objects.filter(name=name, reset_requested_at=at).update(
            reset_requested_at=None
        ):
            taken.add(name)
    return taken
