"""Failed sign-ins lock out a username and an address, at the admin's login page and at the
UI's ``POST /session`` alike, for ``security.admin_lockout_seconds`` (django-axes, configured in
``gomail_site/lockout.py``); the admin is staff only.

The clock stands still (time-machine) and the tests move it: a lockout ends without waiting,
and every ``Retry-After`` is exact.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime

import pytest
from axes.models import AccessAttempt, AccessLog
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from django.test import Client, RequestFactory, override_settings
from django.urls import reverse

from gomail_site.lockout import client_address

PASSWORD = "a-long-enough-password-3"
ATTEMPTS = 3
LOCKOUT_SECONDS = 60
TOO_MANY = re.compile(r"^Too many failed sign-ins: retry in (\d+) seconds$")


@pytest.fixture
def clock(time_machine):
    """Now, standing still until a test shifts it."""
    time_machine.move_to(datetime.now(UTC), tick=False)
    return time_machine


@pytest.fixture
def lockout(db, gomail_config, clock):
    """A short lockout from the configuration: ``ATTEMPTS`` failures, ``LOCKOUT_SECONDS``."""
    gomail_config(
        security={"admin_login_attempts": ATTEMPTS, "admin_lockout_seconds": LOCKOUT_SECONDS}
    )
    return clock


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_user(
        "operator", password=PASSWORD, is_staff=True, is_superuser=True
    )


@pytest.fixture
def customer(db):
    return get_user_model().objects.create_user("customer", password=PASSWORD)


def admin_sign_in(username: str, password: str, address: str = "10.0.0.1", **extra) -> tuple:
    client = Client(REMOTE_ADDR=address, **extra)
    response = client.post("/admin/login/", {"username": username, "password": password})
    return response, client


def ui_sign_in(username: str, password: str, address: str = "10.0.0.1", **extra):
    client = Client(enforce_csrf_checks=True, REMOTE_ADDR=address, **extra)
    client.get("/session")
    return client.post(
        "/session",
        {"username": username, "password": password},
        content_type="application/json",
        HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value,
    )


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def retry_after(response) -> int:
    """The seconds of a lockout answer, checked to say the same in its header and body."""
    assert response.status_code == 429
    body = response.json()
    assert set(body) == {"errors"} and set(body["errors"]) == {"base"}
    match = TOO_MANY.match(body["errors"]["base"])
    assert match, body
    assert response["Retry-After"] == match.group(1)
    return int(match.group(1))


# --- the admin ---------------------------------------------------------------------------


def test_admin_locks_out_a_username_after_the_failures(lockout, staff):
    failures = [admin_sign_in("operator", "wrong")[0] for _ in range(ATTEMPTS)]
    refused, client = admin_sign_in("operator", PASSWORD)

    for failure in failures[:-1]:
        assert failure.status_code == 200
        assert "Please enter the correct username and password" in failure.content.decode()
    # The failure that reaches the limit already answers the lockout.
    for answer in (failures[-1], refused):
        assert answer.status_code == 429
        assert answer["Retry-After"] == str(LOCKOUT_SECONDS)
        page = answer.content.decode()
        assert f"Too many failed sign-ins: retry in {LOCKOUT_SECONDS} seconds" in page
        assert 'id="login-form"' in page  # the admin's own login page, to retry later
    assert not signed_in(client)


def test_admin_signs_in_below_the_limit(lockout, staff):
    for _ in range(ATTEMPTS - 1):
        admin_sign_in("operator", "wrong")
    response, client = admin_sign_in("operator", PASSWORD)

    assert response.status_code == 302
    assert signed_in(client)


def test_admin_lockout_ends_after_the_window(lockout, staff):
    for _ in range(ATTEMPTS):
        admin_sign_in("operator", "wrong")

    lockout.shift(LOCKOUT_SECONDS - 1)
    refused, _ = admin_sign_in("operator", PASSWORD)
    lockout.shift(2)
    response, client = admin_sign_in("operator", PASSWORD)

    assert refused.status_code == 429
    assert refused["Retry-After"] == "1"
    assert response.status_code == 302
    assert signed_in(client)


def test_the_admin_is_for_staff_only(lockout, customer):
    # The right password of a non-staff account does not open the admin...
    response, client = admin_sign_in("customer", PASSWORD)
    # ...nor does a non-staff session from elsewhere (the UI).
    session = Client()
    session.force_login(customer)
    index = session.get("/admin/")
    changelist = session.get("/admin/emails/email/")

    assert response.status_code == 200
    assert "for a staff account" in response.content.decode()
    assert not signed_in(client)
    assert index.status_code == 302
    assert index["Location"].startswith("/admin/login/")
    assert changelist.status_code == 302


def test_the_admin_shows_the_attempts_and_the_sign_ins(lockout, customer, staff):
    for _ in range(ATTEMPTS):
        ui_sign_in("customer", "wrong", address="10.0.17.1")
    _, client = admin_sign_in("operator", PASSWORD, address="10.0.17.2")

    attempts = client.get(reverse("admin:axes_accessattempt_changelist"))
    sign_ins = client.get(reverse("admin:axes_accesslog_changelist"))

    assert attempts.status_code == 200
    assert "10.0.17.1" in attempts.content.decode()
    assert sign_ins.status_code == 200
    assert "10.0.17.2" in sign_ins.content.decode()


# --- the UI's POST /session --------------------------------------------------------------


def test_ui_sign_in_locks_out_with_the_api_error_shape(lockout, customer):
    failures = [ui_sign_in("customer", "wrong") for _ in range(ATTEMPTS)]
    refused = ui_sign_in("customer", PASSWORD)

    assert [failure.status_code for failure in failures[:-1]] == [401] * (ATTEMPTS - 1)
    assert failures[0].json() == {"errors": {"base": "Wrong username or password"}}
    # The failure that reaches the limit already answers the lockout.
    assert retry_after(failures[-1]) == LOCKOUT_SECONDS
    assert retry_after(refused) == LOCKOUT_SECONDS
    assert refused["Content-Type"] == "application/json"
    assert "sessionid" not in refused.cookies


def test_ui_lockout_ends_after_the_window_and_the_count_starts_afresh(lockout, customer):
    for _ in range(ATTEMPTS):
        ui_sign_in("customer", "wrong")

    lockout.shift(LOCKOUT_SECONDS - 1)
    refused = ui_sign_in("customer", PASSWORD)
    lockout.shift(2)
    fresh = [ui_sign_in("customer", "wrong") for _ in range(ATTEMPTS - 1)]
    response = ui_sign_in("customer", PASSWORD)

    assert retry_after(refused) == 1
    assert [failure.status_code for failure in fresh] == [401] * (ATTEMPTS - 1)
    assert response.status_code == 200


def test_a_refused_sign_in_neither_counts_nor_prolongs_the_lockout(lockout, customer):
    for _ in range(ATTEMPTS):
        ui_sign_in("customer", "wrong", address="10.0.18.1")

    lockout.shift(LOCKOUT_SECONDS // 2)
    refusals = [ui_sign_in("customer", "wrong", address="10.0.18.1") for _ in range(3)]
    refusals.append(ui_sign_in("customer", PASSWORD, address="10.0.18.1"))
    counted = AccessAttempt.objects.get().failures_since_start
    lockout.shift(LOCKOUT_SECONDS // 2 + 1)
    response = ui_sign_in("customer", PASSWORD, address="10.0.18.1")

    assert [retry_after(refusal) for refusal in refusals] == [LOCKOUT_SECONDS // 2] * 4
    assert counted == ATTEMPTS
    assert response.status_code == 200


def test_both_doors_count_together(lockout, staff):
    admin_sign_in("operator", "wrong")
    ui_sign_in("operator", "wrong")
    admin_sign_in("operator", "wrong")

    assert ui_sign_in("operator", PASSWORD).status_code == 429
    assert admin_sign_in("operator", PASSWORD)[0].status_code == 429


def test_an_operator_can_lift_a_lockout(lockout, customer, staff):
    for _ in range(ATTEMPTS):
        ui_sign_in("customer", "wrong", address="10.0.14.1")
    for index in range(ATTEMPTS):
        ui_sign_in("customer", "wrong", address=f"10.0.15.{index}")
    for index in range(ATTEMPTS):
        ui_sign_in(f"guess-{index}", "wrong", address="10.0.19.1")
    assert ui_sign_in("customer", PASSWORD, address="10.0.16.1").status_code == 429

    call_command("axes_reset_username", "customer")

    assert ui_sign_in("customer", PASSWORD, address="10.0.16.1").status_code == 200
    assert ui_sign_in("operator", PASSWORD, address="10.0.19.1").status_code == 429
    call_command("axes_reset_ip", "10.0.19.1")
    assert ui_sign_in("operator", PASSWORD, address="10.0.19.1").status_code == 200

    for _ in range(ATTEMPTS):
        ui_sign_in("customer", "wrong", address="10.0.20.1")
    assert ui_sign_in("operator", PASSWORD, address="10.0.20.1").status_code == 429
    call_command("axes_reset")
    assert ui_sign_in("operator", PASSWORD, address="10.0.20.1").status_code == 200
    assert ui_sign_in("customer", PASSWORD, address="10.0.20.1").status_code == 200


# --- usernames and addresses -------------------------------------------------------------


def test_a_username_is_locked_from_every_address(lockout, customer):
    for index in range(ATTEMPTS):
        ui_sign_in("customer", "wrong", address=f"10.0.1.{index}")

    assert ui_sign_in("customer", PASSWORD, address="10.0.2.1").status_code == 429
    assert ui_sign_in("customer", PASSWORD.upper(), address="10.0.2.2").status_code == 429


def test_a_username_is_locked_whatever_the_browser_says(lockout, customer):
    # Axes keeps one row per username, address and User-Agent: the rows add up.
    for index in range(ATTEMPTS):
        ui_sign_in("customer", "wrong", address="10.0.21.1", HTTP_USER_AGENT=f"agent {index}")

    assert ui_sign_in("customer", PASSWORD, address="10.0.21.2").status_code == 429
    assert ui_sign_in("customer", PASSWORD, address="10.0.21.1").status_code == 429


def test_an_address_is_locked_for_every_username(lockout, customer, staff):
    for index in range(ATTEMPTS):
        ui_sign_in(f"guess-{index}", "wrong", address="10.0.3.1")

    from_there = ui_sign_in("customer", PASSWORD, address="10.0.3.1")
    from_elsewhere = ui_sign_in("customer", PASSWORD, address="10.0.3.2")

    assert from_there.status_code == 429
    assert from_elsewhere.status_code == 200


def test_a_success_does_not_reset_another_usernames_count(lockout, customer, staff):
    for index in range(ATTEMPTS - 1):
        ui_sign_in("customer", "wrong", address=f"10.0.4.{index}")
    assert ui_sign_in("operator", PASSWORD, address="10.0.5.1").status_code == 200
    ui_sign_in("customer", "wrong", address="10.0.6.1")

    assert ui_sign_in("customer", PASSWORD, address="10.0.6.2").status_code == 429


def test_a_success_does_not_reset_its_addresss_count(lockout, customer, staff):
    for index in range(ATTEMPTS - 1):
        ui_sign_in(f"guess-{index}", "wrong", address="10.0.7.1")
    assert ui_sign_in("customer", PASSWORD, address="10.0.7.1").status_code == 200
    ui_sign_in("guess-last", "wrong", address="10.0.7.1")

    assert ui_sign_in("operator", PASSWORD, address="10.0.7.1").status_code == 429


def test_a_guesser_with_a_valid_account_cannot_keep_its_address_under_the_limit(
    lockout, customer, staff
):
    # One guess at each of many usernames (no username reaches its limit), and a sign-in with
    # its own account after each guess: only the address's count stops it.
    answers, own = [], []
    for index in range(ATTEMPTS):
        answers.append(ui_sign_in(f"victim-{index}", "guess", address="10.0.22.1").status_code)
        own.append(ui_sign_in("customer", PASSWORD, address="10.0.22.1").status_code)

    assert answers == [401] * (ATTEMPTS - 1) + [429]
    assert own == [200] * (ATTEMPTS - 1) + [429]
    assert ui_sign_in("operator", PASSWORD, address="10.0.22.1").status_code == 429


def test_a_success_forgets_its_own_usernames_failures(lockout, customer):
    for index in range(ATTEMPTS - 1):
        ui_sign_in("customer", "wrong", address=f"10.0.8.{index}")
    assert ui_sign_in("customer", PASSWORD, address="10.0.9.1").status_code == 200
    for index in range(ATTEMPTS - 1):
        ui_sign_in("customer", "wrong", address=f"10.0.10.{index}")

    assert ui_sign_in("customer", PASSWORD, address="10.0.11.1").status_code == 200


def test_no_password_is_stored(lockout, staff, customer):
    guess = "a-guessed-password-7"
    # As a browser does: the admin's form with its CSRF token, which is no one's business either.
    browser = Client(enforce_csrf_checks=True, REMOTE_ADDR="10.0.23.1")
    browser.get("/admin/login/")
    token = browser.cookies["csrftoken"].value
    browser.post(
        "/admin/login/",
        {"username": "operator", "password": guess, "csrfmiddlewaretoken": token},
    )
    ui_sign_in("operator", guess, address="10.0.23.1")
    ui_sign_in("customer", PASSWORD, address="10.0.23.2")

    stored = [
        str(value)
        for model in (AccessAttempt, AccessLog)
        for row in model.objects.values()
        for value in row.values()
    ]
    assert AccessAttempt.objects.get(ip_address="10.0.23.1").failures_since_start == 2
    assert AccessLog.objects.filter(ip_address="10.0.23.2").exists()
    assert not [value for value in stored if guess in value or PASSWORD in value]
    assert not [value for value in stored if token in value]


# --- the client's address ----------------------------------------------------------------


def test_the_address_behind_trusted_proxies():
    request = RequestFactory().get(
        "/", REMOTE_ADDR="10.9.9.9", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7, 10.1.1.1"
    )
    short = RequestFactory().get("/", REMOTE_ADDR="10.9.9.9", HTTP_X_FORWARDED_FOR="10.1.1.1")

    assert client_address(request) == "10.9.9.9"  # no proxy trusted: the peer
    with override_settings(GOMAIL_TRUSTED_PROXY_HOPS=1):
        assert client_address(request) == "10.1.1.1"
    with override_settings(GOMAIL_TRUSTED_PROXY_HOPS=2):
        # The client wrote 6.6.6.6 itself; the outer proxy saw 203.0.113.7.
        assert client_address(request) == "203.0.113.7"
        assert client_address(short) == "10.9.9.9"


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("unknown", None),
        ("", None),
    ],
)
def test_one_spelling_per_address_and_none_for_what_is_not_one(peer, address):
    assert client_address(RequestFactory().get("/", REMOTE_ADDR=peer)) == address


def test_the_lockout_counts_the_address_the_proxies_saw(lockout, customer, settings):
    settings.GOMAIL_TRUSTED_PROXY_HOPS = 1
    for index in range(ATTEMPTS):
        # One client behind several proxies, writing a new address of its own each time.
        ui_sign_in(
            f"guess-{index}",
            "wrong",
            address=f"10.1.0.{index}",
            HTTP_X_FORWARDED_FOR=f"6.6.6.{index}, 198.51.100.7",
        )

    there = ui_sign_in(
        "customer", PASSWORD, address="10.1.0.9", HTTP_X_FORWARDED_FOR="198.51.100.7"
    )
    elsewhere = ui_sign_in(
        "customer", PASSWORD, address="10.1.0.9", HTTP_X_FORWARDED_FOR="198.51.100.8"
    )

    assert there.status_code == 429
    assert elsewhere.status_code == 200
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"198.51.100.7"}


def test_a_client_without_an_address_is_counted_too(lockout, customer):
    for index in range(ATTEMPTS):
        ui_sign_in(f"guess-{index}", "wrong", address="unknown")

    assert ui_sign_in("customer", PASSWORD, address="unknown").status_code == 429
    assert ui_sign_in("customer", PASSWORD, address="10.0.24.1").status_code == 200


# --- across processes --------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_failures_are_all_counted(gomail_config):
    """Failures recorded at once by several processes' threads, all on the same row (one
    username, address and browser), still add up to a lockout."""
    writers = 6
    gomail_config(security={"admin_login_attempts": writers, "admin_lockout_seconds": 60})
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def fail() -> None:
        from django.db import connection

        try:
            request = RequestFactory().post("/session", REMOTE_ADDR="10.0.12.1")
            barrier.wait(timeout=10)
            assert authenticate(request, username="target", password="wrong") is None
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=fail) for _ in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    request = RequestFactory().post("/session", REMOTE_ADDR="10.0.13.1")

    assert errors == []
    assert AccessAttempt.objects.get(username="target").failures_since_start == writers
    assert authenticate(request, username="target", password="wrong") is None
    assert request.axes_locked_out
