"""The dead-letter queue page and its actions, against moto's SQS and the database: looking
hides nothing, redrive moves exactly the selected messages, delete asks first."""

from __future__ import annotations

import html
import re

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from emails.models import Email
from tests.dispatch.realparts import incoming_queue, wire_email
from tests.operations.support import dead_letter_queue, put_dead_letter, queued_record, receive_all

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(90)]

PAGE = "admin:dispatch_deadletter_changelist"
REJECTIONS = {"ses": "Email address is not verified", "sendgrid": "HTTP 400: bad to"}


def dead(subject: str, *, source_queue: str | None = None, receive_count: int = 3):
    """A dead email: its record (dead, rejected by both) and its dead-letter message."""
    email = wire_email(subject=subject)
    queued_record(
        email, status=Email.Status.DEAD, rejections=REJECTIONS, last_error="rejected by all"
    )
    message_id = put_dead_letter(
        email.encode(),
        reason=f"rejected by every provider: {subject}",
        email_id=email.id,
        source_queue=source_queue,
        receive_count=receive_count,
    )
    return email, message_id


def rows(page: str) -> dict[str, list[str]]:
    """The dead-letter table's rows: message id -> the text of each cell."""
    found = {}
    for row in re.findall(r"<tr>(.*?)</tr>", page, flags=re.S):
        selected = re.search(r'name="selected" value="([^"]+)"', row)
        if selected:
            cells = re.findall(r"<td>(.*?)</td>", row, flags=re.S)
            text = [html.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in cells]
            found[selected.group(1)] = text
    return found


def dead_letter_ids() -> set[str]:
    return {message["MessageId"] for message in receive_all(dead_letter_queue())}


def bodies(queue: str) -> list[str]:
    return [message["Body"] for message in receive_all(queue)]


def test_page_lists_messages_and_hides_none(aws, staff_client: Client):
    first, first_id = dead("first", receive_count=4)
    second, second_id = dead("second", source_queue=incoming_queue(1), receive_count=11)
    foreign_id = put_dead_letter("not json at all", reason="undecodable message: body is not JSON")

    response = staff_client.get(reverse(PAGE))

    assert response.status_code == 200
    table = rows(response.content.decode())
    assert set(table) == {first_id, second_id, foreign_id}
    # Columns: checkbox, dead-lettered, reason, email, message, from queue, receives.
    assert table[first_id][2] == "rejected by every provider: first"
    assert table[first_id][3] == first.id
    assert "'first'" in table[first_id][4]
    assert table[first_id][5] == incoming_queue(0)
    assert table[first_id][6] == "4"
    assert table[second_id][3] == second.id
    assert table[second_id][5] == incoming_queue(1)
    assert table[second_id][6] == "11"
    assert table[foreign_id][2] == "undecodable message: body is not JSON"
    assert "(undecodable)" in table[foreign_id][4]
    # The email's body is not on the page, only its addresses and subject.
    assert "Hello there" not in response.content.decode()

    # Looking hid nothing: every message can be received again at once.
    assert dead_letter_ids() == {first_id, second_id, foreign_id}


def test_page_twice_shows_every_message_both_times(aws, staff_client: Client):
    ids = {dead(f"n{n}")[1] for n in range(12)}  # more than one ReceiveMessage's worth

    first = rows(staff_client.get(reverse(PAGE)).content.decode())
    second = rows(staff_client.get(reverse(PAGE)).content.decode())

    assert set(first) == set(second) == ids


def test_redrive_selected_moves_exactly_those(aws, staff_client: Client, staff_user):
    one, one_id = dead("one")
    two, two_id = dead("two", source_queue=incoming_queue(1))
    stays, stays_id = dead("stays")

    response = staff_client.post(
        reverse(PAGE), {"action": "redrive", "selected": [one_id, two_id]}, follow=True
    )

    assert response.status_code == 200
    assert "Redrove 2 message(s)." in response.content.decode()
    assert dead_letter_ids() == {stays_id}
    # Back on the queue each came from, with the same body.
    assert bodies(incoming_queue(0)) == [one.encode()]
    assert bodies(incoming_queue(1)) == [two.encode()]
    for email, queue in ((one, incoming_queue(0)), (two, incoming_queue(1))):
        record = Email.objects.get(id=email.id)
        assert record.status == Email.Status.QUEUED
        assert record.rejections == {}
        assert record.last_error == ""
        assert record.queue == queue
    untouched = Email.objects.get(id=stays.id)
    assert untouched.status == Email.Status.DEAD
    assert untouched.rejections == REJECTIONS
    entry = LogEntry.objects.get(user=staff_user)
    assert entry.get_change_message().startswith("Redrove 2 dead-letter message(s)")
    # The admin's "recent actions" lists it (an entry with no object to link to).
    index = staff_client.get(reverse("admin:index"))
    assert index.status_code == 200
    assert "dead-letter queue" in index.content.decode()


def test_redrive_to_a_queue_no_longer_configured_goes_to_the_first(aws, staff_client: Client):
    email, message_id = dead("orphan", source_queue="gomail-retired-queue")

    staff_client.post(reverse(PAGE), {"action": "redrive", "selected": [message_id]})

    assert bodies(incoming_queue(0)) == [email.encode()]
    assert Email.objects.get(id=email.id).queue == incoming_queue(0)


def test_redrive_all(aws, staff_client: Client, staff_user):
    emails = [dead(f"all {n}")[0] for n in range(3)]
    foreign_id = put_dead_letter("not json", reason="undecodable message")

    response = staff_client.post(reverse(PAGE), {"action": "redrive_all"}, follow=True)

    assert "Redrove 4 message(s)." in response.content.decode()
    assert dead_letter_ids() == set()
    assert sorted(bodies(incoming_queue(0))) == sorted([e.encode() for e in emails] + ["not json"])
    assert set(Email.objects.values_list("status", flat=True)) == {Email.Status.QUEUED}
    assert foreign_id
    assert LogEntry.objects.get(user=staff_user).get_change_message() == (
        "Redrove all (4) dead-letter messages"
    )


def test_redrive_with_nothing_selected_moves_nothing(aws, staff_client: Client):
    _, message_id = dead("kept")

    response = staff_client.post(reverse(PAGE), {"action": "redrive"}, follow=True)

    assert "Nothing selected" in response.content.decode()
    assert dead_letter_ids() == {message_id}


def test_delete_asks_first_then_deletes_only_the_selected(aws, staff_client: Client, staff_user):
    _, gone_id = dead("gone")
    _, kept_id = dead("kept")

    confirm = staff_client.post(reverse(PAGE), {"action": "delete", "selected": [gone_id]})

    assert confirm.status_code == 200
    page = confirm.content.decode()
    assert "will be deleted" in page
    assert gone_id in page
    assert kept_id not in page
    assert 'name="confirmed" value="yes"' in page
    assert dead_letter_ids() == {gone_id, kept_id}  # nothing deleted, nothing hidden
    assert not LogEntry.objects.exists()

    done = staff_client.post(
        reverse(PAGE),
        {"action": "delete", "selected": [gone_id], "confirmed": "yes"},
        follow=True,
    )

    assert "Deleted 1 message(s)." in done.content.decode()
    assert dead_letter_ids() == {kept_id}
    assert (
        LogEntry.objects.get(user=staff_user)
        .get_change_message()
        .startswith("Deleted 1 dead-letter message(s)")
    )


def test_staff_without_delete_permission_cannot_delete(aws, db):
    viewer = get_user_model().objects.create_user(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_deadletter"))
    client = Client()
    client.force_login(viewer)
    _, message_id = dead("protected")

    page = client.get(reverse(PAGE)).content.decode()
    response = client.post(
        reverse(PAGE),
        {"action": "delete", "selected": [message_id], "confirmed": "yes"},
        follow=True,
    )

    assert message_id in page
    assert 'value="delete"' not in page
    assert "not allowed" in response.content.decode()
    assert dead_letter_ids() == {message_id}
