from __future__ import annotations

import re
from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import Count, QuerySet
from django.db.models.fields.json import KeyTransform
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from emails.models import ApiKey, Attempt, Email, EmailTag, SenderAllowance
from emails.resending import resend

# A search term "key=value" looks in the emails' metadata. The key is a JSON key only: no
# "__", no lookup name can come through (KeyTransform takes it as one key, whatever it is).
METADATA_TERM = re.compile(r"(?P<key>[A-Za-z0-9_-]+)=(?P<value>.*)", re.DOTALL)


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


class TagFilter(admin.SimpleListFilter):
    """Emails by tag, offering the most used tags (any other one works from the URL)."""

    title = "tag"
    parameter_name = "tag"
    OFFERED = 20

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        counted = (
            EmailTag.objects.values("tag")
            .annotate(emails=Count("email"))
            .order_by("-emails", "tag")[: self.OFFERED]
        )
        return [(row["tag"], f"{row['tag']} ({row['emails']})") for row in counted]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Email]) -> QuerySet[Email]:
        if self.value() is None:
            return queryset
        return queryset.filter(tag_rows__tag=self.value()).distinct()


# Shown formatted instead of as JSON; the other fields as they are.
FORMATTED = {"recipients": "recipient_list", "attachments": "attachment_list"}


@admin.register(Email)
class EmailAdmin(admin.ModelAdmin):
    list_display = ["id", "to_email", "from_email", "status", "provider", "attempts", "accepted_at"]
    list_filter = ["status", "provider", TagFilter, "accepted_at"]
    search_fields = ["=id", "to_email", "from_email"]
    search_help_text = (
        "An id, a recipient or a sender; or key=value for the emails whose metadata has it."
    )
    date_hierarchy = "accepted_at"
    readonly_fields = [FORMATTED.get(field.name, field.name) for field in Email._meta.fields]
    # Not form fields either: every field of an email is read-only.
    exclude = list(FORMATTED)
    inlines = [AttemptInline]
    actions = ["resend_dead"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Emails enter through the API only, so that every record has a queued message.
        return False

    @admin.display(description="recipients")
    def recipient_list(self, email: Email) -> str:
        # An original-format email's one recipient is to_email/to_name only.
        lists = email.recipients or {"to": [{"email": email.to_email, "name": email.to_name}]}
        return "; ".join(
            f"{place.capitalize()}: " + ", ".join(_mailbox(item) for item in lists[place])
            for place in ("to", "cc", "bcc")
            if lists.get(place)
        )

    @admin.display(description="attachments")
    def attachment_list(self, email: Email) -> str:
        return (
            ", ".join(
                f"{item['filename']} ({filesizeformat(item['size'])}, {item['contentType']}"
                + (f", inline as cid:{item['contentId']})" if item.get("contentId") else ")")
                for item in email.attachments
            )
            or "-"
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Email], search_term: str
    ) -> tuple[QuerySet[Email], bool]:
        """``key=value`` finds the emails whose ``metadata[key] == value`` (on SQLite and
        PostgreSQL alike: a JSON key transform, compared as a JSON string); any other term, the
        ``search_fields``."""
        term = METADATA_TERM.fullmatch(search_term.strip())
        if term is None:
            return super().get_search_results(request, queryset, search_term)
        value = KeyTransform(term["key"], "metadata")
        return queryset.alias(metadata_value=value).filter(metadata_value=term["value"]), False

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


def _mailbox(item: dict[str, str]) -> str:
    return f"{item['name']} <{item['email']}>" if item.get("name") else item["email"]


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
