"""A provider added by one module and one configuration entry, nothing else: it is routed to,
its health is tracked, and it shows in the admin and ``/providers``
(``tests/operations/notebook_provider.py``; docs/architecture.md, "Adding a provider")."""

from __future__ import annotations

import uuid

import pytest
from django.urls import reverse

from dispatch import health_store
from dispatch.pipeline import run_pipeline
from dispatch.sending import build_providers, send_batch
from gomail_site.config import Providers
from tests.dispatch.realparts import put, wire_email
from tests.operations import notebook_provider
from tests.operations.support import queued_record

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def with_notebook(settings, aws):
    """SES, SendGrid and the notebook, as a configuration file would list them (pytest-django's
    ``settings``: put back after the test)."""
    notebook_provider.SENT.clear()
    notebook_provider.FAILING.clear()
    added = Providers.parse(
        {
            **{name: settings.GOMAIL.providers[name] for name in ("ses", "sendgrid")},
            "notebook": {"type": notebook_provider.TYPE, "label": "nb"},
        }
    )
    settings.GOMAIL = settings.GOMAIL.model_copy(update={"providers": added})
    yield
    notebook_provider.SENT.clear()


def run_and_send(sendgrid_stub) -> dict[str, int]:
    """One pipeline run whose batches are sent here, at once, by the built providers."""
    providers = build_providers()
    sent: dict[str, int] = {}

    def dispatch(name, batch_id, messages, probe=False) -> None:
        sent[name] = sent.get(name, 0) + len(messages)
        send_batch(name, batch_id, messages, providers=providers, probe=probe)

    run_pipeline(dispatch)
    return sent


def queue(count: int) -> list[str]:
    emails = [wire_email() for _ in range(count)]
    for email in emails:
        queued_record(email)
        put(email.encode())
    return [email.id for email in emails]


def test_an_added_provider_is_routed_to_and_health_tracked(with_notebook, settings, sendgrid_stub):
    assert settings.GOMAIL.enabled_providers == ["ses", "sendgrid", "notebook"]
    queue(9)

    first = run_and_send(sendgrid_stub)

    # An equal third of the split, sent by the module's provider under its instance name.
    assert first == {"ses": 3, "sendgrid": 3, "notebook": 3}
    assert len(notebook_provider.SENT) == 3
    # Its batch outcome is folded by the next run like any provider's.
    notebook_provider.FAILING.set()
    queue(9)
    run_and_send(sendgrid_stub)
    state = health_store.load_state("notebook")
    assert state.consecutive_passes == 1
    run_and_send(sendgrid_stub)
    assert health_store.load_state("notebook").consecutive_failures == 1
    assert "the notebook is closed" in health_store.load_state("notebook").last_error


def test_an_added_provider_shows_in_the_admin_and_providers(
    with_notebook, staff_client, sendgrid_stub
):
    queue(3)
    run_and_send(sendgrid_stub)

    page = staff_client.get(reverse("admin:dispatch_providercontrol_changelist")).content
    assert b"notebook" in page
    listed = {row["name"]: row for row in staff_client.get("/providers").json()}
    assert listed["notebook"]["enabled"] is True
    assert listed["notebook"]["healthy"] is True
    assert list(listed) == ["ses", "sendgrid", "notebook"]
    # Its email's record names the instance that sent it.
    assert uuid.UUID(str(notebook_provider.SENT[0].message_id))


def test_a_provider_that_cannot_be_built_leaves_the_others_working(settings, aws, caplog):
    settings.GOMAIL = settings.GOMAIL.model_copy(
        update={
            "providers": Providers.parse(
                {
                    "ses": {"type": "ses"},
                    "broken": {"type": notebook_provider.TYPE, "label": "unbuildable"},
                }
            )
        }
    )

    built = build_providers()

    assert list(built) == ["ses"]
    assert "provider broken cannot be built" in caplog.text
