"""Staff who may only look (view permission) cannot steer: no action that changes anything is
offered to them, and posting one anyway changes nothing."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from dispatch.models import ProviderControl
from emails.models import ApiKey, Email
from tests.dispatch.realparts import wire_email
from tests.operations.support import dead_letter_queue, put_dead_letter, queued_record, receive_all

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]


@pytest.fixture
def viewer(db) -> Client:
    """A staff user with every view permission of the operators' pages and nothing else."""
    user = get_user_model().objects.create_user(username="viewer", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=[
                "view_providercontrol",
                "view_deadletter",
                "view_email",
                "view_attempt",
                "view_apikey",
            ]
        )
    )
    client = Client()
    client.force_login(user)
    return client


def post_action(client: Client, changelist: str, action: str, *pks: object):
    return client.post(
        reverse(changelist),
        {"action": action, "_selected_action": [str(pk) for pk in pks], "index": 0},
        follow=True,
    )


def offered_actions(client: Client, changelist: str) -> set[str]:
    response = client.get(reverse(changelist))
    assert response.status_code == 200
    form = response.context.get("action_form")
    if form is None:
        return set()
    return {value for value, _ in form.fields["action"].choices if value}


def test_viewer_can_look_at_every_page(viewer: Client, aws):
    for page in (
        "admin:dispatch_providercontrol_changelist",
        "admin:dispatch_deadletter_changelist",
        "admin:emails_email_changelist",
        "admin:emails_apikey_changelist",
    ):
        assert viewer.get(reverse(page)).status_code == 200, page


def test_viewer_cannot_drain_resume_or_reset(viewer: Client):
    changelist = "admin:dispatch_providercontrol_changelist"

    assert offered_actions(viewer, changelist) == set()
    for action in ("drain", "reset_health"):
        post_action(viewer, changelist, action, "ses")

    control = ProviderControl.objects.get(name="ses")
    assert not control.drained
    assert control.reset_requested_at is None


def test_viewer_cannot_resend(viewer: Client, aws):
    email = wire_email()
    record = queued_record(email, status=Email.Status.DEAD)
    put_dead_letter(email.encode(), email_id=email.id)

    assert "resend_dead" not in offered_actions(viewer, "admin:emails_email_changelist")
    post_action(viewer, "admin:emails_email_changelist", "resend_dead", record.id)

    assert Email.objects.count() == 1
    assert len(receive_all(dead_letter_queue())) == 1


def test_viewer_cannot_revoke_keys(viewer: Client):
    api_key, _ = ApiKey.create_key("precious")

    assert "revoke" not in offered_actions(viewer, "admin:emails_apikey_changelist")
    post_action(viewer, "admin:emails_apikey_changelist", "revoke", api_key.pk)

    api_key.refresh_from_db()
    assert api_key.revoked_at is None


def test_viewer_cannot_redrive(viewer: Client, aws):
    message_id = put_dead_letter(wire_email().encode())

    page = viewer.get(reverse("admin:dispatch_deadletter_changelist")).content.decode()
    response = viewer.post(
        reverse("admin:dispatch_deadletter_changelist"),
        {"action": "redrive", "selected": [message_id]},
        follow=True,
    )
    viewer.post(reverse("admin:dispatch_deadletter_changelist"), {"action": "redrive_all"})

    assert 'value="redrive"' not in page
    assert "not allowed" in response.content.decode()
    assert [m["MessageId"] for m in receive_all(dead_letter_queue())] == [message_id]
