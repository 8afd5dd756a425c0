"""The browser UI end to end: chromium against the running service (see ``conftest.py``).

Selectors are the ones frontend/README.md promises: labels, roles and data-testid.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from playwright.sync_api import Locator, Page, expect

from devtools.moto_server import MotoServer
from devtools.sendgrid_stub import SendGridStub
from dispatch import health_store
from emails.models import Email
from tests import harness
from tests.e2e.conftest import PageFactory, screenshot
from tests.harness.pipeline import PipelineLoop

pytestmark = [pytest.mark.system, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"
PHONE = {"width": 375, "height": 740}
ADMIN_VIEWPORT = {"width": 1440, "height": 800}  # the admin's provider table is wide
SENT_TIMEOUT_MS = 60_000  # from "Send" to "sent", with retries after a failed attempt
PROVIDERS_TIMEOUT_MS = 30_000  # the panel refreshes every 5 s


def make_user(username: str, **extra: Any) -> Any:
    return get_user_model().objects.create_user(
        username, f"{username}@example.com", PASSWORD, **extra
    )


def sign_in(page: Page, username: str, password: str = PASSWORD) -> None:
    page.goto("/")
    expect(page.get_by_role("heading", level=1, name="Sign in")).to_be_visible()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1, name="Send an email")).to_be_visible()


def email_form(index: int = 0) -> dict[str, str]:
    """The form's labels and values of a valid email from the verified SES sender, with a
    unique subject (how moto's SES record is traced back to it)."""
    fields = harness.email_fields(index)
    return {
        "From name": "Ada Lovelace",
        "From email": fields["fromEmail"],
        "To name": "Charles Babbage",
        "To email": fields["toEmail"],
        "Subject": fields["subject"],
        "Body": f"Sent from the browser test, number {index}.",
    }


def is_send(response: Any) -> bool:
    return response.url.endswith("/email/send") and response.request.method == "POST"


def session_call(response: Any) -> bool:
    """An answer of ``/session`` to a sign-in (POST) or sign-out (DELETE)."""
    return response.url.endswith("/session") and response.request.method in ("POST", "DELETE")


def send_through_ui(page: Page, form: dict[str, str]) -> str:
    """Fill the send form, press Send, and return the message id the page then shows."""
    for label, value in form.items():
        page.get_by_label(label, exact=True).fill(value)
    with page.expect_response(is_send) as answer:
        page.get_by_role("button", name="Send", exact=True).click()
    assert answer.value.status == 200, (answer.value.status, answer.value.text())
    message_id = answer.value.json()["messageId"]
    expect(page.get_by_test_id("message-id")).to_have_text(message_id)
    return message_id


def provider_row(page: Page, name: str) -> Locator:
    return page.get_by_test_id("provider-row").and_(page.locator(f'[data-provider="{name}"]'))


def admin_row(page: Page, name: str) -> Locator:
    """The row of provider ``name`` on the admin's provider health page."""
    name_cell = page.locator("td.field-name", has_text=re.compile(rf"^\s*{name}\s*$"))
    return page.locator("#result_list tbody tr").filter(has=name_cell)


def is_red(css_colour: str) -> bool:
    """``rgb(179, 38, 30)`` and the like: red dominates clearly."""
    r, g, b = (int(part) for part in re.findall(r"\d+", css_colour)[:3])
    return r >= 150 and g <= 90 and b <= 90


def assert_red(locator: Locator, prop: str) -> None:
    colour = locator.evaluate(f"(el) => getComputedStyle(el).{prop}")
    assert is_red(colour), f"{prop} is {colour}, not red"


def scroll_width(page: Page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


# --- 1. signing in and out ---------------------------------------------------------------------


def test_sign_in_with_a_django_account_a_wrong_password_shows_the_banner_and_sign_out_works(
    page: Page,
) -> None:
    make_user("ada")

    page.goto("/")
    expect(page.get_by_role("heading", level=1, name="Sign in")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).to_have_count(0)

    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill("not the password")
    with page.expect_response(session_call) as answer:
        page.get_by_role("button", name="Sign in").click()
    assert answer.value.request.method == "POST" and answer.value.status == 401
    banner = page.get_by_test_id("banner")
    expect(banner).to_have_text("Wrong username or password")
    expect(banner).to_have_attribute("role", "alert")
    expect(banner).to_be_focused()
    expect(page.get_by_role("heading", level=1, name="Sign in")).to_be_visible()

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1, name="Send an email")).to_be_visible()
    expect(page.get_by_test_id("banner")).to_have_count(0)
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link")).to_have_text(["Send", "Recent emails", "Providers"])
    expect(page.get_by_role("banner").get_by_text("ada", exact=True)).to_be_visible()

    # The Django session survives a reload.
    page.reload()
    expect(page.get_by_role("heading", level=1, name="Send an email")).to_be_visible()

    with page.expect_response(session_call) as answer:
        page.get_by_role("button", name="Sign out").click()
    assert answer.value.request.method == "DELETE" and answer.value.status == 204
    expect(page.get_by_role("heading", level=1, name="Sign in")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).to_have_count(0)
    # Signed out on the server too: a reload stays signed out and the API refuses the session.
    page.reload()
    expect(page.get_by_role("heading", level=1, name="Sign in")).to_be_visible()
    assert page.request.get("/session").status == 401
    assert page.request.get("/providers").status == 401


# --- 2. the server's field errors --------------------------------------------------------------


def test_an_invalid_email_shows_each_fields_own_error_from_the_server(page: Page) -> None:
    make_user("grace")
    sign_in(page, "grace")

    page.get_by_label("From email", exact=True).fill("not-an-email")
    page.get_by_label("Subject", exact=True).fill("Incomplete")
    with page.expect_response(is_send) as answer:
        page.get_by_role("button", name="Send", exact=True).click()
    assert answer.value.status == 422, answer.value.text()
    expected = {
        "From email": "From email is not a valid email",
        "To email": "To email is required",
        "Body": "Body is required",
    }
    errors = answer.value.json()["errors"]
    assert errors == {
        "fromEmail": expected["From email"],
        "toEmail": expected["To email"],
        "body": expected["Body"],
    }

    for label, message in expected.items():
        field = page.get_by_label(label, exact=True)
        expect(field).to_have_attribute("aria-invalid", "true")
        # Tied to its field (aria-describedby) and shown right after it, in the same group.
        expect(field).to_have_accessible_description(message)
        expect(field.locator("xpath=following-sibling::*[1]")).to_have_text(message)
        field_box = field.bounding_box()
        error_box = field.locator("xpath=following-sibling::*[1]").bounding_box()
        assert field_box and error_box
        assert 0 <= error_box["y"] - (field_box["y"] + field_box["height"]) < 40, (
            label,
            field_box,
            error_box,
        )
    for label in ("From name", "To name", "Subject"):
        expect(page.get_by_label(label, exact=True)).to_have_attribute("aria-invalid", "false")
    expect(page.locator(".field-error")).to_have_count(3)
    expect(page.get_by_test_id("banner")).to_have_count(0)
    expect(page.get_by_test_id("message-id")).to_have_count(0)
    # Focus goes to the first field in error; what was typed is kept.
    expect(page.get_by_label("From email", exact=True)).to_be_focused()
    expect(page.get_by_label("Subject", exact=True)).to_have_value("Incomplete")
    assert Email.objects.count() == 0

    # Correcting a field clears its own message only.
    page.get_by_label("From email", exact=True).fill(harness.SENDER)
    expect(page.get_by_label("From email", exact=True)).to_have_attribute("aria-invalid", "false")
    expect(page.get_by_label("To email", exact=True)).to_have_accessible_description(
        expected["To email"]
    )


# --- 3. a valid email, followed live until sent ------------------------------------------------


def test_a_valid_email_becomes_sent_in_the_live_status_view_and_reaches_its_provider(
    page: Page,
    pipeline: PipelineLoop,
    sendgrid_stub: SendGridStub,
    integration_aws: MotoServer,
) -> None:
    make_user("ada")
    sign_in(page, "ada")
    form = email_form()

    message_id = send_through_ui(page, form)

    expect(page.get_by_role("heading", name="Email accepted")).to_be_focused()
    status = page.get_by_test_id("email-status")
    expect(status).to_have_attribute("data-status", "sent", timeout=SENT_TIMEOUT_MS)
    expect(status).to_have_text("sent")
    provider = page.get_by_test_id("email-provider")
    expect(provider).to_have_text(re.compile(r"^(ses|sendgrid)$"))
    expect(page.get_by_test_id("email-attempts")).to_have_text(re.compile(r"^[1-9]\d*$"))
    expect(page.get_by_test_id("polling-state")).to_have_text("Final status: no more updates.")
    # Ready for the next email: the sender is kept, the rest is cleared.
    expect(page.get_by_label("From email", exact=True)).to_have_value(form["From email"])
    expect(page.get_by_label("Body", exact=True)).to_have_value("")

    # It really reached the provider the page names, exactly once.
    shown = provider.inner_text()
    ledger = harness.take_ledger([message_id], sendgrid_stub, integration_aws.url)
    ledger.assert_each_sent_once()
    assert ledger.providers[message_id] == shown, ledger.summary()
    assert ledger.delivered_by(shown) == 1, ledger.summary()
    screenshot(page, "ui-send")

    # The recent list shows it as sent, and its own page too.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Recent emails").click()
    expect(page.get_by_role("heading", level=1, name="Recent emails")).to_be_visible()
    row = page.get_by_test_id("recent-row").filter(has_text=form["Subject"])
    expect(row.get_by_test_id("recent-status")).to_have_text("sent")
    row.get_by_role("link", name=form["Subject"]).click()
    expect(page.get_by_role("heading", level=1, name="Delivery status")).to_be_visible()
    expect(page.get_by_test_id("message-id")).to_have_text(message_id)
    expect(page.get_by_test_id("email-status")).to_have_attribute("data-status", "sent")


# --- 4. a SendGrid outage in the providers panel -----------------------------------------------


def test_a_sendgrid_outage_turns_its_panel_red_with_a_probe_and_every_email_is_sent_via_ses(
    page: Page,
    new_page: PageFactory,
    pipeline: PipelineLoop,
    sendgrid_stub: SendGridStub,
    integration_aws: MotoServer,
) -> None:
    threshold = settings.GOMAIL.health.unhealthy_threshold
    sendgrid_stub.configure(fail_rate=1, fail_status=500)
    make_user("ada")
    sign_in(page, "ada")
    panel = page.context.new_page()
    panel.goto("/#/providers")
    expect(panel.get_by_role("heading", level=1, name="Providers")).to_be_visible()
    sendgrid, ses = provider_row(panel, "sendgrid"), provider_row(panel, "ses")
    expect(sendgrid.get_by_test_id("provider-health")).to_have_attribute("data-health", "healthy")

    # Bursts of two emails, each read by one run: split evenly while both are healthy, so each
    # burst gives SendGrid a batch, which fails. Until the pipeline marks it unhealthy.
    ids: list[str] = []
    started = time.monotonic()
    for burst in range(3 * threshold):
        state = health_store.load_state("sendgrid")
        if not state.healthy:
            break
        with pipeline.held():
            ids += [send_through_ui(page, email_form(len(ids) + i)) for i in range(2)]
        harness.wait_for(
            lambda before=state.consecutive_failures: (
                health_store.load_state("sendgrid").consecutive_failures > before
            ),
            30,
            f"SendGrid's failure of burst {burst + 1} to be folded into its health",
        )
    state = health_store.load_state("sendgrid")
    assert not state.healthy, (state, f"{len(ids)} emails in {time.monotonic() - started:.1f}s")
    assert "500" in state.last_error, state

    # The panel (refreshed every 5 s) turns SendGrid red, with its probe; SES stays green.
    health = sendgrid.get_by_test_id("provider-health")
    expect(health).to_have_attribute("data-health", "unhealthy", timeout=PROVIDERS_TIMEOUT_MS)
    expect(health).to_have_text("Unhealthy")
    expect(sendgrid).to_contain_text(re.compile("probed each run", re.IGNORECASE))
    expect(sendgrid).to_have_class(re.compile(r"\bunhealthy\b"))
    expect(sendgrid).to_contain_text("HTTP 500")
    assert_red(health, "color")
    assert_red(sendgrid, "borderLeftColor")
    expect(ses.get_by_test_id("provider-health")).to_have_attribute("data-health", "healthy")
    screenshot(panel, "ui-providers")

    # Emails sent during the outage are sent too: SES takes them, SendGrid gets only probes.
    ids += [send_through_ui(page, email_form(len(ids) + i)) for i in range(2)]
    expect(page.get_by_test_id("email-status")).to_have_attribute(
        "data-status", "sent", timeout=SENT_TIMEOUT_MS
    )
    expect(page.get_by_test_id("email-provider")).to_have_text("ses")
    harness.wait_for(lambda: harness.settled(ids), 90, f"all {len(ids)} emails to be settled")
    ledger = harness.take_ledger(ids, sendgrid_stub, integration_aws.url)
    ledger.assert_each_sent_once()
    assert ledger.delivered_by("ses") == len(ids), ledger.summary()
    assert ledger.stub_attempts == ledger.stub_failures >= threshold, ledger.summary()
    assert not ledger.dead, ledger.summary()

    # The operators' page says so too: a staff user in the Django admin sees the red row.
    get_user_model().objects.create_superuser("operator", "operator@example.com", PASSWORD)
    admin = new_page(ADMIN_VIEWPORT)
    admin.goto("/admin/login/?next=/admin/dispatch/providercontrol/")
    admin.get_by_label("Username").fill("operator")
    admin.get_by_label("Password").fill(PASSWORD)
    admin.get_by_role("button", name="Log in").click()
    expect(admin).to_have_url(re.compile(r"/admin/dispatch/providercontrol/$"))
    # The sidebar folded away, so that every column of the table is in view.
    admin.get_by_role("button", name="Toggle navigation").click()
    assert scroll_width(admin) <= ADMIN_VIEWPORT["width"]
    table = admin.locator("#result_list")
    assert table.evaluate("(t) => t.scrollWidth <= t.parentElement.clientWidth"), "table scrolls"
    status = admin_row(admin, "sendgrid").locator("td.field-status")
    expect(status).to_have_text("unhealthy (probe each run)")
    assert_red(status.locator("strong"), "color")
    expect(admin_row(admin, "ses").locator("td.field-status")).to_have_text("healthy")
    screenshot(admin, "provider-health")
    sendgrid_stub.reset()


# --- 5. a phone, and the keyboard only ---------------------------------------------------------


def test_on_a_phone_the_send_page_fits_and_the_form_works_with_the_keyboard_only(
    new_page: PageFactory, pipeline: PipelineLoop
) -> None:
    make_user("ada")
    page = new_page(PHONE)
    page.goto("/")
    expect(page.get_by_role("heading", level=1, name="Sign in")).to_be_visible()
    assert scroll_width(page) <= PHONE["width"]

    # Signing in: the username has the focus, Tab to the password, Enter.
    expect(page.get_by_label("Username")).to_be_focused()
    page.keyboard.type("ada")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1, name="Send an email")).to_be_focused()
    assert scroll_width(page) <= PHONE["width"], "horizontal scroll on the send page"

    # Tab through the form in order, typing into the fields and past the buttons that add rows
    # and the optional fields; Tab to Send and press Enter.
    form = email_form()
    form["To email"] = "phone.reader@example.org"
    for label in (
        *("From name", "From email", "To name", "To email"),
        *("button:Add To recipient", "button:Add Cc", "button:Add Bcc"),
        *("Subject", "Body", "HTML body", "Attachments", "Tags", "button:Add metadata"),
    ):
        page.keyboard.press("Tab")
        if label.startswith("button:"):
            button = page.get_by_role("button", name=label.removeprefix("button:"), exact=True)
            expect(button).to_be_focused()
            continue
        expect(page.get_by_label(label, exact=True)).to_be_focused()
        if label in form:
            page.keyboard.type(form[label])
    page.keyboard.press("Tab")
    send = page.get_by_role("button", name="Send", exact=True)
    expect(send).to_be_focused()
    with page.expect_response(is_send) as answer:
        page.keyboard.press("Enter")
    assert answer.value.status == 200, answer.value.text()
    message_id = answer.value.json()["messageId"]

    expect(page.get_by_role("heading", name="Email accepted")).to_be_focused()
    expect(page.get_by_test_id("message-id")).to_have_text(message_id)
    expect(page.get_by_test_id("email-status")).to_have_attribute(
        "data-status", "sent", timeout=SENT_TIMEOUT_MS
    )
    record = Email.objects.get(id=message_id)
    assert (record.to_email, record.subject) == ("phone.reader@example.org", form["Subject"])
    # Still no horizontal scroll with the long message id and the status shown.
    assert scroll_width(page) <= PHONE["width"], "horizontal scroll after sending"


# --- 6. a Cc and an attachment -----------------------------------------------------------------


def test_an_email_with_a_cc_an_attachment_and_html_is_sent_and_its_page_shows_them(
    page: Page, pipeline: PipelineLoop, tmp_path: Path
) -> None:
    make_user("ada")
    sign_in(page, "ada")
    report = tmp_path / "report.txt"
    report.write_bytes(b"Quarterly numbers, all good.\n" * 64)  # 1856 bytes: "1.8 KB"
    form = email_form()

    for label, value in form.items():
        page.get_by_label(label, exact=True).fill(value)
    page.get_by_role("button", name="Add Cc", exact=True).click()
    expect(page.get_by_label("Cc email", exact=True)).to_be_focused()
    page.get_by_label("Cc name", exact=True).fill("Carol Shaw")
    page.get_by_label("Cc email", exact=True).fill("carol.shaw@example.org")
    # The HTML body's preview renders it, under the page's CSP, and runs none of its scripts.
    page.get_by_label("HTML body", exact=True).fill(
        '<p id="hello">Hello <b>Carol</b></p><script>document.body.dataset.ran = "yes"</script>'
    )
    preview = page.frame_locator('iframe[title="HTML preview"]')
    expect(preview.locator("#hello")).to_have_text("Hello Carol")
    expect(preview.locator("body")).not_to_have_attribute("data-ran", "yes")
    page.get_by_label("Attachments", exact=True).set_input_files(report)
    attachment = page.get_by_test_id("attachment")
    expect(attachment).to_contain_text("report.txt")
    expect(attachment.get_by_test_id("attachment-size")).to_have_text("1.8 KB")
    expect(attachment.get_by_test_id("attachment-error")).to_have_count(0)
    # The limits were asked when the file was picked, and it is within them.
    expect(page.get_by_label("Attachments", exact=True)).to_have_accessible_description(
        re.compile(r"^Up to \d+ files, ")
    )
    send = page.get_by_role("button", name="Send", exact=True)
    expect(send).to_be_enabled()
    with page.expect_response(is_send) as answer:
        send.click()
    assert answer.value.status == 200, (answer.value.status, answer.value.text())
    sent = answer.value.request.post_data_json["email"]
    assert sent["cc"] == [{"email": "carol.shaw@example.org", "name": "Carol Shaw"}], sent
    assert sent["attachments"][0]["filename"] == "report.txt", sent
    message_id = answer.value.json()["messageId"]
    expect(page.get_by_test_id("message-id")).to_have_text(message_id)
    expect(page.get_by_test_id("attachment")).to_have_count(0)  # cleared for the next email

    # Its own page names the Cc and the file, and follows it to sent.
    page.get_by_role("link", name=re.compile(r"^Open this email.s status page$")).click()
    expect(page.get_by_role("heading", level=1, name="Delivery status")).to_be_visible()
    expect(page.get_by_test_id("email-to")).to_have_text(f"{form['To name']} <{form['To email']}>")
    expect(page.get_by_test_id("email-cc")).to_have_text("Carol Shaw <carol.shaw@example.org>")
    expect(page.get_by_test_id("email-attachment")).to_have_text("report.txt (1.8 KB, text/plain)")
    expect(page.get_by_test_id("email-status")).to_have_attribute(
        "data-status", "sent", timeout=SENT_TIMEOUT_MS
    )

    # The record and the API say the same.
    record = Email.objects.get(id=message_id)
    assert record.recipients["cc"] == [{"email": "carol.shaw@example.org", "name": "Carol Shaw"}]
    assert record.attachments == [
        {"filename": "report.txt", "contentType": "text/plain", "size": 1856}
    ]
    status = page.request.get(f"/email/{message_id}").json()
    assert status["cc"] == record.recipients["cc"], status
    assert status["attachments"] == record.attachments, status
