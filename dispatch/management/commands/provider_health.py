from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from dispatch.health_store import provider_health


class Command(BaseCommand):
    help = "Show each provider's health as the pipeline last folded it."

    def handle(self, *args: Any, **options: Any) -> None:
        gomail = settings.GOMAIL
        providers = [(name, cfg.enabled) for name, cfg in gomail.providers.items()]
        self.stdout.write(
            f"{'provider':<10} {'enabled':<8} {'healthy':<8} {'failing':>7} {'passing':>7} "
            f"{'in flight':>9}  since / last error"
        )
        for health in provider_health(providers):
            state = health.state
            since = state.changed_at.isoformat(timespec="seconds") if state.changed_at else "-"
            self.stdout.write(
                f"{health.name:<10} {'yes' if health.enabled else 'no':<8} "
                f"{'yes' if state.healthy else 'NO':<8} {state.consecutive_failures:>7} "
                f"{state.consecutive_passes:>7} {health.in_flight:>9}  {since} "
                f"{state.last_error}"
            )
        self.stdout.write(
            f"thresholds: unhealthy after {gomail.health.unhealthy_threshold} failing batches, "
            f"healthy after {gomail.health.healthy_threshold} passing ones"
        )
