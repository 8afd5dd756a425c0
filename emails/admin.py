from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from emails.models import ApiKey, Attempt, Email
from emails.resending import resend


class AttemptInline(admin.TabularInline):
    """The delivery history: one row per provider call."""

    model = Attempt
    extra = 0
    can_delete = False
    fields = ["at", "provider", "outcome", "error", "outcome_unknown"]
    readonly_fields = fields
    verbose_name_plural = "delivery attempts"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Email)
class EmailAdmin(admin.ModelAdmin):
    list_display = ["id", "to_email", "from_email", "status", "provider", "attempts", "accepted_at"]
    list_filter = ["status", "provider", "accepted_at"]
    search_fields = ["=id", "to_email", "from_email"]
    date_hierarchy = "accepted_at"
    readonly_fields = [field.name for field in Email._meta.fields]
    inlines = [AttemptInline]
    actions = ["resend_dead"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Emails enter through the API only, so that every record has a queued message.
        return False

    @admin.action(
        description="Resend selected dead emails (a copy, linked to the original)",
        permissions=["change"],
    )
    def resend_dead(self, request: HttpRequest, queryset: QuerySet[Email]) -> None:
        for email in queryset:
            outcome = resend(email)
            if outcome.copy is not None:
                self.log_change(request, email, f"Resent as {outcome.copy.id}")
                self.message_user(
                    request, f"{email.id}: resent as {outcome.copy.id}.", messages.SUCCESS
                )
            else:
                self.message_user(request, f"{email.id}: {outcome.refusal}", messages.WARNING)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "user", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "prefix", "user__username"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]
    actions = ["revoke"]

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if not change:
            raw_key = obj.assign_new_key()
            # The only time the key is visible: it is not stored, only its hash.
            self.message_user(
                request,
                f"New API key for {obj.name} (copy it now, it is not shown again): {raw_key}",
                messages.WARNING,
            )
        super().save_model(request, obj, form, change)

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {count} API key(s).", messages.SUCCESS)
