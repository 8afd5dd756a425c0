"""The configuration is validated at start-up, with errors that name the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from gomail_site.config import ConfigError, GomailConfig, load_config, receives_to_reach

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_environment_overrides(monkeypatch):
    # The test settings override the endpoint from the environment; these tests read files only.
    monkeypatch.delenv("GOMAIL_AWS__ENDPOINT_URL", raising=False)
    monkeypatch.delenv("GOMAIL_CONFIG", raising=False)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_example_config_loads_and_equals_the_embedded_defaults():
    assert load_config(REPO / "config.yaml.example") == GomailConfig()


def test_no_file_at_the_default_path_means_embedded_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    config = load_config()

    assert config.sqs.incoming_queues == ["gomail-incoming-1", "gomail-incoming-2"]
    assert config.api.require_auth is True


def test_gomail_config_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("GOMAIL_CONFIG", str(write(tmp_path, "api:\n  max_recipients: 7\n")))

    assert load_config().api.max_recipients == 7


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # 10 MiB of attachments take 13,981,016 characters of base64, and 1 MiB more.
        ("api:\n  max_body_size_bytes: 300000\n", "at least 15029592"),
        (
            "api:\n  max_body_size_bytes: 5000000\n  max_attachments_bytes: 3000000\n"
            "  max_attachment_bytes: 3000000\n",
            "at least 5048576",
        ),
        ("api:\n  max_attachment_bytes: 20000000\n", "must not exceed api.max_attachments_bytes"),
        # 10 days of incoming retention, 14 in the dead-letter queue and a day.
        ("payloads:\n  lifecycle_days: 24\n", "at least 25"),
    ],
)
def test_limits_that_do_not_fit_each_other_are_refused(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_limits_that_fit_each_other_load(tmp_path):
    text = (
        "api:\n  max_body_size_bytes: 5048576\n  max_attachments_bytes: 3000000\n"
        "  max_attachment_bytes: 3000000\npayloads:\n  lifecycle_days: 25\n"
    )
    config = load_config(write(tmp_path, text))
    assert (config.api.max_body_size_bytes, config.payloads.lifecycle_days) == (5_048_576, 25)


def test_an_explicitly_named_file_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("aws:\n  region: ''\n", "aws.region"),
        ("sqs:\n  incoming_queues: []\n", "sqs.incoming_queues"),
        ("api:\n  max_body_size_bytes: -1\n", "api.max_body_size_bytes"),
        ("api:\n  max_body_size_bytes: 70000000\n", "api.max_body_size_bytes"),
        ("api:\n  max_recipients: 51\n", "api.max_recipients"),
        ("payloads:\n  bucket: Not_A_Bucket\n", "payloads.bucket"),
        ("api:\n  allowed_headers: [List-Unsubscribe, Bcc]\n", "api.allowed_headers"),
        ("api:\n  allowed_headers: ['X-Bad: header']\n", "api.allowed_headers"),
        ("health:\n  healthy_threshold: 0\n", "health.healthy_threshold"),
        ("health:\n  unhealthy_threshold: many\n", "health.unhealthy_threshold"),
        ("pipeline:\n  interval_milliseconds: 1\n", "pipeline.interval_milliseconds"),
        ("aws:\n  client_timeout_seconds: 0\n", "aws.client_timeout_seconds"),
        ("aws:\n  endpoint_url: not a url\n", "aws.endpoint_url"),
        ("sqs:\n  incoming_queues: [a, a]\n", "sqs.incoming_queues"),
        ("sqs:\n  incoming_queues: ['bad name!']\n", "sqs.incoming_queues.0"),
        ("sqs:\n  visibility_timeout_seconds: 5\n", "sqs.visibility_timeout_seconds"),
        ("sqs:\n  max_receive_count: 5000\n", "sqs.max_receive_count"),
        (
            "providers:\n  sendgrid:\n    timeout_seconds: -3\n",
            "providers.sendgrid.timeout_seconds",
        ),
        ("api:\n  max_body_size: 10\n", "api.max_body_size"),
        ("apii:\n  require_auth: false\n", "apii"),
        ("security:\n  cookie_samesite: none\n", "security.cookie_samesite"),
        # A browser drops a SameSite=None cookie that is not Secure (production only).
        ("security:\n  cookie_samesite: None\n", "security"),
    ],
)
def test_each_invalid_value_names_its_key(tmp_path, text, key):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text))

    assert f"  {key}: " in str(error.value)


def test_every_invalid_key_is_reported_at_once(tmp_path):
    text = "aws:\n  region: ''\nhealth:\n  healthy_threshold: 0\n"

    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text))

    assert "aws.region" in str(error.value)
    assert "health.healthy_threshold" in str(error.value)


@pytest.mark.parametrize("text", ["aws: [unclosed\n", "- a list\n- not a mapping\n"])
def test_a_file_that_is_not_a_mapping_is_refused(tmp_path, text):
    with pytest.raises(ConfigError, match=r"config\.yaml"):
        load_config(write(tmp_path, text))


def test_the_environment_overrides_a_key_of_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("GOMAIL_AWS__REGION", "eu-west-1")

    config = load_config(write(tmp_path, "aws:\n  region: us-east-2\n"))

    assert config.aws.region == "eu-west-1"


def test_a_wrong_environment_override_names_its_key(tmp_path, monkeypatch):
    monkeypatch.setenv("GOMAIL_HEALTH__UNHEALTHY_THRESHOLD", "-2")

    with pytest.raises(ConfigError, match=r"health\.unhealthy_threshold"):
        load_config(write(tmp_path, ""))


def test_endpoint_can_be_unset_for_real_aws(tmp_path):
    assert load_config(write(tmp_path, "aws:\n  endpoint_url: null\n")).aws.endpoint_url is None


def test_cross_site_cookies_come_with_production_mode(tmp_path):
    config = load_config(
        write(tmp_path, "security:\n  production: true\n  cookie_samesite: None\n")
    )

    assert config.security.cookie_samesite == "None"


@pytest.mark.parametrize("key", ["sqs", "celery"])
def test_a_visibility_timeout_must_outlast_three_of_the_slowest_provider_calls(tmp_path, key):
    # The slowest call: SendGrid's 4 s timeout, or an AWS call (1 s) retried 3 times.
    timeouts = (
        "aws:\n  client_timeout_seconds: 1\nproviders:\n  sendgrid:\n    timeout_seconds: 4\n"
        "  smtp:\n    enabled: false\n"
    )
    fits = load_config(write(tmp_path, timeouts + f"{key}:\n  visibility_timeout_seconds: 12\n"))
    assert getattr(fits, key).visibility_timeout_seconds == 12

    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, timeouts + f"{key}:\n  visibility_timeout_seconds: 11\n"))
    assert f"{key}.visibility_timeout_seconds must be at least 3 times" in str(error.value)
    assert "(4 s)" in str(error.value)


def test_a_visibility_timeout_must_outlast_a_whole_batch_sent_in_rounds(tmp_path):
    """A batch of 10 at a send_concurrency of 1 is 10 rounds of up to 2 calls each (one per
    enabled provider): with the default timeouts (an AWS call of 5 s tried 3 times: 15 s)
    that is 21 x 15 s > 300 s."""
    slow = "providers:\n  ses:\n    send_concurrency: {}\n  smtp:\n    enabled: false\n"
    assert load_config(write(tmp_path, slow.format(2))).providers.ses.send_concurrency == 2

    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, slow.format(1)))
    assert "sqs.visibility_timeout_seconds must be at least 21 times" in str(error.value)
    assert "10 round(s) of 2 calls" in str(error.value)


@pytest.mark.parametrize(
    ("seconds", "base", "cap", "receives"),
    [
        (0, 10, 900, 0),
        (10, 10, 900, 1),
        (11, 10, 900, 2),
        (72 * 3600, 10, 900, 294),  # the defaults: well within 1000 receives
        (10, 1, 2, 6),  # 1 + 2 * 5
        (60, 0, 900, None),  # no backoff: never
        (60, 5, 0, None),
    ],
)
def test_receives_to_reach(seconds, base, cap, receives):
    assert receives_to_reach(seconds, base, cap) == receives


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        # Gomail's give-up must come before the incoming queues' retention deletes anything.
        (
            {"sqs": {"message_retention_seconds": 72 * 3600}},
            "sqs.message_retention_seconds must exceed delivery.max_age_hours",
        ),
        # The dead-letter queue keeps SQS's maximum: the incoming queues must keep less.
        ({"sqs": {"message_retention_seconds": 1_209_600}}, "message_retention_seconds"),
        # A 2 s backoff takes 129,601 receives to reach 72 hours: SQS's redrive comes first.
        (
            {"pipeline": {"backoff_base_seconds": 1, "backoff_max_seconds": 2}},
            "takes 129601 receives to reach delivery.max_age_hours",
        ),
        ({"pipeline": {"backoff_base_seconds": 0}}, "takes endless receives"),
        ({"sqs": {"max_receive_count": 100}}, "at most 50 (half of sqs.max_receive_count)"),
    ],
)
def test_timings_that_let_sqs_act_first_are_refused(tmp_path, overrides, message):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(overrides))
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path)


def test_short_backoffs_fit_a_short_max_age(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "pipeline": {"backoff_base_seconds": 1, "backoff_max_seconds": 2},
                "delivery": {"max_age_hours": 0.25},
            }
        )
    )
    assert load_config(path).delivery.max_age_hours == 0.25


# --- providers: any number of instances, each of a type ------------------------------------


def test_the_original_two_sections_still_load(tmp_path):
    """``ses:`` and ``sendgrid:`` with no ``type`` mean those two instances, as they did: no
    SMTP relay joins them (that is only the embedded defaults', with no section at all)."""
    config = load_config(
        write(
            tmp_path,
            "providers:\n  ses:\n    max_in_flight: 50\n  sendgrid:\n    enabled: false\n",
        )
    )
    assert list(config.providers) == ["ses", "sendgrid"]
    assert config.providers.ses.type == "ses" and config.providers.ses.max_in_flight == 50
    assert config.providers["sendgrid"].enabled is False
    assert config.enabled_providers == ["ses"]
    # A disabled provider's queue is still consumed: what was dispatched to it goes out.
    assert config.celery_queues == ["pipeline", "ses", "sendgrid"]
    only_ses = load_config(write(tmp_path, "providers:\n  ses:\n    max_in_flight: 5\n"))
    assert list(only_ses.providers) == ["ses", "sendgrid"]
    assert list(load_config(write(tmp_path, "aws:\n  region: us-east-1\n")).providers) == [
        "ses",
        "sendgrid",
        "smtp",
    ]


def test_instances_of_any_type_side_by_side(tmp_path):
    config = load_config(
        write(
            tmp_path,
            "providers:\n"
            "  ses-eu: {type: ses, region: eu-west-1, weight: 2}\n"
            "  relay: {type: smtp, host: mail.example.org, port: 587, security: starttls}\n"
            "  backup: {type: smtp, host: backup.example.org, timeout_seconds: 2}\n",
        )
    )
    assert list(config.providers) == ["ses-eu", "relay", "backup"]
    assert config.providers["ses-eu"].region == "eu-west-1"
    assert config.providers["ses-eu"].weight == 2
    assert (config.providers["relay"].host, config.providers["relay"].port) == (
        "mail.example.org",
        587,
    )
    assert config.celery_queues == ["pipeline", "ses-eu", "relay", "backup"]


@pytest.mark.parametrize(
    ("providers", "message"),
    [
        ("  relay: {type: smtp, port: 0}\n", "providers.relay.port: Input should be greater"),
        ("  relay: {type: smtp, security: maybe}\n", "providers.relay.security: Input should be"),
        ("  relay: {type: smtp, colour: red}\n", "providers.relay.colour: Extra inputs"),
        ("  relay: {type: pigeon}\n", "providers.relay.type: unknown provider type 'pigeon'"),
        ("  Relay!: {type: smtp}\n", "a provider name is lower case letters"),
        ("  mail: {host: x}\n", "providers.mail.type: unknown provider type 'mail'"),
        ("  ses: 5\n", "providers.ses: its options must be a mapping"),
        ("  r: {type: smtp, password_env: PASS}\n", "password_env needs a username_env"),
        ("  eu: {type: ses, region: eu west 1}\n", "providers.eu.region: String should match"),
        (f"  {'a' * 33}: {{type: smtp}}\n", "a provider name is lower case letters"),
    ],
)
def test_a_wrong_provider_entry_names_its_key(tmp_path, providers, message):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, "providers:\n" + providers))
    assert message in str(error.value)


def test_an_environment_override_of_a_list_option_is_read_as_json(tmp_path, monkeypatch):
    monkeypatch.setenv("GOMAIL_PROVIDERS__SES__VERIFY_IDENTITIES", '["a.example", "b.example"]')
    config = load_config(write(tmp_path, "providers:\n  ses: {}\n"))
    assert config.providers.ses.verify_identities == ["a.example", "b.example"]


def test_production_queue_urls_must_name_every_provider_queue(tmp_path):
    urls = "celery:\n  queue_urls:\n" + "".join(
        f"    {name}: https://sqs.example/{name}\n" for name in ("pipeline", "ses")
    )
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, "providers:\n  ses: {}\n" + urls))
    assert "celery.queue_urls has no URL for the queue(s) sendgrid" in str(error.value)
    fits = urls + "    sendgrid: https://sqs.example/sendgrid\n"
    assert load_config(write(tmp_path, "providers:\n  ses: {}\n" + fits)).celery.queue_urls
