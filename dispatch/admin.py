"""The operators' pages: provider health with drain / resume / reset, and the dead-letter queue."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.safestring import mark_safe

from dispatch import controls, dead_letters
from dispatch.health import HealthState
from dispatch.health_store import load_last_run, load_pending, load_state
from dispatch.models import DeadLetter, ProviderControl
from emails.models import Attempt
from emails.records import oldest_waiting_accepted_at

# The pipeline is called quiet after this many intervals without a finished run, and never
# sooner than the floor: a run reading a deep backlog may take several short intervals.
QUIET_AFTER_INTERVALS = 5
QUIET_FLOOR_SECONDS = 30.0


@dataclass(frozen=True)
class LastRunStatus:
    text: str
    warning: bool


def _seconds_ago(then: datetime, now: datetime) -> int:
    return max(int((now - then).total_seconds()), 0)


def last_run_status(
    finished_at: datetime | None, now: datetime, interval_seconds: float
) -> LastRunStatus:
    """What the provider page says of the last finished pipeline run, and whether it warns."""
    if finished_at is None:
        return LastRunStatus("no pipeline run has finished yet", warning=True)
    ago = _seconds_ago(finished_at, now)
    quiet_after = max(QUIET_AFTER_INTERVALS * interval_seconds, QUIET_FLOOR_SECONDS)
    return LastRunStatus(
        f"last pipeline run finished at {finished_at:%Y-%m-%d %H:%M:%S} UTC ({ago} s ago)",
        warning=ago > quiet_after,
    )


def oldest_waiting_status(accepted_at: datetime | None, now: datetime) -> str:
    if accepted_at is None:
        return "no email waiting"
    ago = _seconds_ago(accepted_at, now)
    return f"oldest email waiting: accepted at {accepted_at:%Y-%m-%d %H:%M:%S} UTC ({ago} s ago)"


def _last_hour(provider: str) -> dict[str, int]:
    since = timezone.now() - timedelta(hours=1)
    rows = (
        Attempt.objects.filter(provider=provider, at__gte=since)
        .values("outcome")
        .annotate(count=Count("id"))
    )
    counts = {row["outcome"]: row["count"] for row in rows}
    sent = counts.pop(Attempt.Outcome.SENT, 0)
    return {"sent": sent, "failed": sum(counts.values())}


@admin.register(ProviderControl)
class ProviderHealthAdmin(admin.ModelAdmin):
    """One row per configured provider: its health from the cache and the operator's switches."""

    list_display = [
        "name",
        "status",
        "streaks",
        "thresholds",
        "since",
        "last_error",
        "in_flight",
        "last_hour",
        "drained",
        "changed_by",
    ]
    list_display_links = None
    actions = ["drain", "resume", "reset_health"]
    ordering = ["name"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> Any:
        controls.ensure_controls()
        now = timezone.now()
        interval = settings.GOMAIL.pipeline.interval_milliseconds / 1000
        extra_context = {
            **(extra_context or {}),
            # Shown above the providers (change_list.html): is mail moving at all?
            "last_run": last_run_status(load_last_run(), now, interval),
            "oldest_waiting": oldest_waiting_status(oldest_waiting_accepted_at(), now),
        }
        return super().changelist_view(request, extra_context)

    def get_queryset(self, request: HttpRequest) -> QuerySet[ProviderControl]:
        return super().get_queryset(request).filter(name__in=controls.provider_names())

    @staticmethod
    def _state(obj: ProviderControl) -> HealthState:
        return load_state(obj.name)

    @admin.display(description="health")
    def status(self, obj: ProviderControl) -> str:
        instance = settings.GOMAIL.providers.get(obj.name)
        enabled = instance is not None and instance.enabled
        state = self._state(obj)
        if not enabled:
            return mark_safe('<span style="color:#666">disabled in config</span>')
        if obj.drained:
            return mark_safe('<strong style="color:#666">drained</strong>')
        if state.healthy:
            return mark_safe('<strong style="color:#1a7f37">healthy</strong>')
        return mark_safe('<strong style="color:#b42318">unhealthy</strong> (probe each run)')

    @admin.display(description="failing / passing streak")
    def streaks(self, obj: ProviderControl) -> str:
        state = self._state(obj)
        return f"{state.consecutive_failures} / {state.consecutive_passes}"

    @admin.display(description="thresholds (unhealthy / healthy)")
    def thresholds(self, obj: ProviderControl) -> str:
        health = settings.GOMAIL.health
        return f"{health.unhealthy_threshold} / {health.healthy_threshold}"

    @admin.display(description="last transition")
    def since(self, obj: ProviderControl) -> str:
        state = self._state(obj)
        if state.changed_at is None:
            return "never"
        became = "healthy" if state.healthy else "unhealthy"
        return f"{became} at {state.changed_at:%Y-%m-%d %H:%M:%S} UTC"

    @admin.display(description="last error")
    def last_error(self, obj: ProviderControl) -> str:
        return self._state(obj).last_error or "-"

    @admin.display(description="in flight")
    def in_flight(self, obj: ProviderControl) -> int:
        return sum(batch.size for batch in load_pending(obj.name))

    @admin.display(description="last hour (sent / failed)")
    def last_hour(self, obj: ProviderControl) -> str:
        counts = _last_hour(obj.name)
        return f"{counts['sent']} / {counts['failed']}"

    def _act(self, request: HttpRequest, queryset: QuerySet, verb: str, change: Any) -> None:
        for control in queryset:
            updated = change(control.name, request.user.get_username())
            self.log_change(request, updated, f"{verb} {control.name}")
        self.message_user(
            request, f"{verb}: {', '.join(c.name for c in queryset)}", messages.SUCCESS
        )

    @admin.action(description="Drain: no traffic, not even probes", permissions=["change"])
    def drain(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._act(request, queryset, "Drained", lambda n, by: controls.set_drained(n, True, by))

    @admin.action(description="Resume traffic", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._act(request, queryset, "Resumed", lambda n, by: controls.set_drained(n, False, by))

    @admin.action(
        description="Reset health (applied by the next pipeline run)", permissions=["change"]
    )
    def reset_health(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._act(request, queryset, "Health reset requested for", controls.request_health_reset)


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    """The dead-letter queue in SQS: a look at it, redrive and delete. Nothing is in the DB."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_urls(self) -> list:
        return [
            path(
                "",
                self.admin_site.admin_view(self.queue_view),
                name="dispatch_deadletter_changelist",
            ),
        ]

    def _log(self, request: HttpRequest, message: str) -> None:
        # Django's admin log, like every other admin action: who did what, when.
        LogEntry.objects.create(
            user_id=request.user.pk,
            content_type=ContentType.objects.get_for_model(DeadLetter, for_concrete_model=False),
            object_repr="dead-letter queue",
            action_flag=CHANGE,
            change_message=message,
        )

    def queue_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        if request.method == "POST":
            return self._post(request)
        context = {
            **self.admin_site.each_context(request),
            "title": "Dead-letter queue",
            "opts": self.model._meta,
            "queue": settings.GOMAIL.sqs.dead_letter_queue,
            "dead_letters": dead_letters.peek(limit=500),
            "can_change": self.has_change_permission(request),
            "can_delete": self.has_delete_permission(request),
            "confirm_delete": False,
        }
        return TemplateResponse(request, "admin/dispatch/dead_letters.html", context)

    def _redriven(self, request: HttpRequest, report: dead_letters.RedriveReport) -> None:
        self.message_user(request, f"Redrove {report.moved} message(s).", messages.SUCCESS)
        for note in report.notes():
            self.message_user(request, note, messages.WARNING)

    def _post(self, request: HttpRequest) -> HttpResponse:
        action = request.POST.get("action")
        ids = set(request.POST.getlist("selected"))
        here = reverse("admin:dispatch_deadletter_changelist")
        if action == "redrive_all" and self.has_change_permission(request):
            report = dead_letters.redrive(None)
            self._log(request, f"Redrove all ({report.moved}) dead-letter messages")
            self._redriven(request, report)
        elif action == "redrive" and ids and self.has_change_permission(request):
            report = dead_letters.redrive(ids)
            self._log(request, f"Redrove {report.moved} dead-letter message(s): {sorted(ids)}")
            self._redriven(request, report)
        elif action == "delete" and ids and self.has_delete_permission(request):
            if request.POST.get("confirmed") != "yes":
                context = {
                    **self.admin_site.each_context(request),
                    "title": "Delete dead-letter messages?",
                    "opts": self.model._meta,
                    "selected": sorted(ids),
                    "confirm_delete": True,
                }
                return TemplateResponse(request, "admin/dispatch/dead_letters.html", context)
            deleted = dead_letters.delete(ids)
            self._log(request, f"Deleted {deleted} dead-letter message(s): {sorted(ids)}")
            self.message_user(request, f"Deleted {deleted} message(s).", messages.SUCCESS)
        else:
            self.message_user(request, "Nothing selected, or not allowed.", messages.WARNING)
        return HttpResponseRedirect(here)
