"""Failed sign-ins lock out a username and an address, at the admin's login page and at the
UI's ``POST /session`` alike, for ``security.admin_lockout_seconds``; the admin is staff only."""

from __future__ import annotations

import re
import threading
import time

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client, RequestFactory, override_settings

from gomail_site.login_throttle import LoginThrottle, client_address, unlock

PASSWORD = "a-long-enough-password-3"
ATTEMPTS = 3
TOO_MANY = re.compile(r"^Too many failed sign-ins: retry in (\d+) seconds$")


@pytest.fixture
def lockout(db, gomail_config):
    """A short lockout: ``ATTEMPTS`` failures within ``seconds``."""

    def configure(seconds: int = 60) -> None:
        gomail_config(security={"admin_login_attempts": ATTEMPTS, "admin_lockout_seconds": seconds})

    configure()
    return configure


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_user(
        "operator", password=PASSWORD, is_staff=True, is_superuser=True
    )


@pytest.fixture
def customer(db):
    return get_user_model().objects.create_user("customer", password=PASSWORD)


def admin_sign_in(username: str, password: str, address: str = "10.0.0.1") -> tuple:
    client = Client(REMOTE_ADDR=address)
    response = client.post("/admin/login/", {"username": username, "password": password})
    return response, client


def ui_sign_in(username: str, password: str, address: str = "10.0.0.1"):
    client = Client(enforce_csrf_checks=True, REMOTE_ADDR=address)
    client.get("/session")
    return client.post(
        "/session",
        {"username": username, "password": password},
        content_type="application/json",
        HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value,
    )


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


# --- the admin ---------------------------------------------------------------------------


def test_admin_locks_out_a_username_after_the_failures(lockout, staff):
    failures = [admin_sign_in("operator", "wrong")[0] for _ in range(ATTEMPTS)]
    refused, client = admin_sign_in("operator", PASSWORD)

    for failure in failures:
        assert failure.status_code == 200
        assert "Please enter the correct username and password" in failure.content.decode()
    assert refused.status_code == 429
    page = refused.content.decode()
    assert re.search(r"Too many failed sign-ins: retry in (59|60) seconds", page), page
    assert 59 <= int(refused["Retry-After"]) <= 60
    assert not signed_in(client)


def test_admin_signs_in_below_the_limit(lockout, staff):
    for _ in range(ATTEMPTS - 1):
        admin_sign_in("operator", "wrong")
    response, client = admin_sign_in("operator", PASSWORD)

    assert response.status_code == 302
    assert signed_in(client)


def test_admin_lockout_ends_after_the_window(lockout, staff):
    lockout(seconds=2)
    for _ in range(ATTEMPTS):
        admin_sign_in("operator", "wrong")
    refused, _ = admin_sign_in("operator", PASSWORD)

    time.sleep(2.2)
    response, client = admin_sign_in("operator", PASSWORD)

    assert refused.status_code == 429
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


# --- the UI's POST /session --------------------------------------------------------------


def test_ui_sign_in_locks_out_with_the_api_error_shape(lockout, customer):
    failures = [ui_sign_in("customer", "wrong") for _ in range(ATTEMPTS)]
    refused = ui_sign_in("customer", PASSWORD)

    assert [failure.status_code for failure in failures] == [401] * ATTEMPTS
    assert refused.status_code == 429
    body = refused.json()
    assert set(body) == {"errors"} and set(body["errors"]) == {"base"}
    match = TOO_MANY.match(body["errors"]["base"])
    assert match and 59 <= int(match.group(1)) <= 60
    assert refused["Retry-After"] == match.group(1)
    assert "sessionid" not in refused.cookies


def test_ui_lockout_ends_after_the_window(lockout, customer):
    lockout(seconds=2)
    for _ in range(ATTEMPTS):
        ui_sign_in("customer", "wrong")
    refused = ui_sign_in("customer", PASSWORD)

    time.sleep(2.2)
    response = ui_sign_in("customer", PASSWORD)

    assert refused.status_code == 429
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
    assert ui_sign_in("customer", PASSWORD, address="10.0.16.1").status_code == 429

    unlock(username="customer")

    assert ui_sign_in("customer", PASSWORD, address="10.0.16.1").status_code == 200
    assert ui_sign_in("operator", PASSWORD, address="10.0.14.1").status_code == 429
    unlock(address="10.0.14.1")
    assert ui_sign_in("operator", PASSWORD, address="10.0.14.1").status_code == 200


# --- usernames and addresses -------------------------------------------------------------


def test_a_username_is_locked_from_every_address(lockout, customer):
    for index in range(ATTEMPTS):
        ui_sign_in("customer", "wrong", address=f"10.0.1.{index}")

    assert ui_sign_in("customer", PASSWORD, address="10.0.2.1").status_code == 429
    assert ui_sign_in("customer", PASSWORD.upper(), address="10.0.2.2").status_code == 429


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


def test_a_success_forgets_its_own_usernames_failures(lockout, customer):
    for index in range(ATTEMPTS - 1):
        ui_sign_in("customer", "wrong", address=f"10.0.8.{index}")
    assert ui_sign_in("customer", PASSWORD, address="10.0.9.1").status_code == 200
    for index in range(ATTEMPTS - 1):
        ui_sign_in("customer", "wrong", address=f"10.0.10.{index}")

    assert ui_sign_in("customer", PASSWORD, address="10.0.11.1").status_code == 200


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


@pytest.mark.django_db(transaction=True)
def test_concurrent_failures_are_all_counted(gomail_config):
    """Failures recorded at once by several processes' threads still add up to a lockout."""
    writers = 6
    gomail_config(security={"admin_login_attempts": writers, "admin_lockout_seconds": 60})
    cache.clear()
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def fail(index: int) -> None:
        from django.db import connection

        try:
            request = RequestFactory().post("/session", REMOTE_ADDR=f"10.0.12.{index}")
            throttle = LoginThrottle(request, "target")
            barrier.wait(timeout=10)
            throttle.failed()
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=fail, args=(index,)) for index in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    request = RequestFactory().post("/session", REMOTE_ADDR="10.0.13.1")
    try:
        assert errors == []
        assert LoginThrottle(request, "target").retry_after() > 0
    finally:
        cache.clear()
