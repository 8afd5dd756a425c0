from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from emails.models import ApiKey, Attempt, Email, SenderAllowance
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
    search_fields = ["name", "prefix", "user__username", "allowed_senders"]
    fields = [
        "name",
        "user",
        "allowed_senders",
        "prefix",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
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


# --- allowed senders of users (the sender policy, emails/senders.py) -------------------------


@admin.register(SenderAllowance)
class SenderAllowanceAdmin(admin.ModelAdmin):
    list_display = ["user", "allowed_senders"]
    search_fields = ["user__username", "allowed_senders"]
    autocomplete_fields = ["user"]


class SenderAllowanceInline(admin.StackedInline):
    """A user's allowed senders, on the user's own admin page."""

    model = SenderAllowance
    can_delete = True
    extra = 1  # an empty form, saved only when filled in
    max_num = 1
    verbose_name_plural = "allowed senders (besides the configuration's api.allowed_senders)"


_User = get_user_model()
# Extend whatever User admin is registered (Django's own, unless a project app replaced it).
_BaseUserAdmin = (
    type(admin.site.get_model_admin(_User)) if admin.site.is_registered(_User) else UserAdmin
)


class UserWithSendersAdmin(_BaseUserAdmin):
    """Django's User admin, with the user's allowed senders as an inline."""

    inlines = [*_BaseUserAdmin.inlines, SenderAllowanceInline]


if admin.site.is_registered(_User):
    admin.site.unregister(_User)
admin.site.register(_User, UserWithSendersAdmin)
