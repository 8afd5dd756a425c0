"""The one configuration of every Gomail process.

Read from a YAML file (path in ``GOMAIL_CONFIG``, default ``./config.yaml``; no file at all
means the embedded local defaults), overridable per key from the environment
(``GOMAIL_<SECTION>__<KEY>``), and validated by pydantic so that a wrong value fails at
start-up with a message naming its key. Secrets never live here: they come from the
environment (see ``gomail_site.settings``).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import core_schema
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULT_CONFIG_PATH = Path("config.yaml")

# What every SQS queue takes (older queues' MaximumMessageSize, a new queue's default): a
# larger email travels as a claim check (emails.claim_check), whatever the queue's own limit.
SQS_MAX_MESSAGE_BYTES = 262_144
# A request body may carry attachments (base64: 4 bytes for every 3) up to this much.
MAX_BODY_SIZE_LIMIT = 64 * 1024 * 1024
MIB = 1024 * 1024
# What a request body holds besides its attachments' base64 (text, HTML, recipients, ...):
# api.max_body_size_bytes must leave at least this much beside the attachments.
BODY_ROOM_BESIDE_ATTACHMENTS = MIB

PIPELINE_QUEUE = "pipeline"
# SQS's longest retention, the dead-letter queue's (dispatch/queues.py).
SQS_MAX_RETENTION_SECONDS = 1_209_600
# SQS's own redrive must never beat Gomail's give-up: the backoff schedule reaches
# delivery.max_age_hours within this share of sqs.max_receive_count receives (the rest is
# room for receives that are no failure: a breaker or a rate limit handing a message back).
RECEIVES_SHARE_FOR_BACKOFF = 0.5

QueueName = Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_-]+$")]
PositiveInt = Annotated[int, Field(gt=0)]


class ConfigError(Exception):
    """The configuration cannot be used; the message names every offending key."""


class Section(BaseModel):
    # A misspelt key is a silent default otherwise: refuse it.
    model_config = ConfigDict(extra="forbid", frozen=True)


class AwsConfig(Section):
    region: str = Field("us-east-1", min_length=1)  # the original's aws_region
    # None means the real AWS endpoints; the local default is the moto server.
    endpoint_url: HttpUrl | None = HttpUrl("http://127.0.0.1:5000")
    client_timeout_seconds: float = Field(5.0, gt=0, le=60)  # aws_client_timeout_seconds


class SqsConfig(Section):
    # The original's queue_urls: names here, resolved to URLs against the endpoint.
    incoming_queues: list[QueueName] = Field(
        default_factory=lambda: ["gomail-incoming-1", "gomail-incoming-2"], min_length=1
    )
    dead_letter_queue: QueueName = "gomail-dead-letter"
    # Must exceed the worst case from read to delete, or a message is read and sent twice:
    # at least 3 times the slowest provider call, more when a batch is sent in several rounds
    # (checked with the provider timeouts below).
    visibility_timeout_seconds: int = Field(300, ge=10, le=43_200)
    # SQS's own bound on receives before redrive; high, so an outage alone never dead-letters.
    max_receive_count: int = Field(1000, ge=1, le=1000)
    # The incoming queues' retention: longer than delivery.max_age_hours, shorter than the
    # dead-letter queue's (always SQS's maximum, 14 days): a standard queue keeps a message's
    # first enqueue time when SQS itself moves it, so the dead-letter queue must outlive it.
    # 10 days: a stall of the whole service (beat, the pipeline or the database down) may
    # last that long before SQS deletes anything; a message SQS moved still has 4 days there.
    message_retention_seconds: int = Field(864_000, ge=60, lt=SQS_MAX_RETENTION_SECONDS)

    @field_validator("incoming_queues")
    @classmethod
    def _unique(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError("queue names must be unique")
        return names


class PayloadsConfig(Section):
    """The S3 bucket of claim checks: emails too large for SQS or a send task."""

    bucket: str = Field("gomail-payloads", pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    # The cleanup deletes the object of an email sent, withdrawn or unknown once it is this
    # old (a sent email's is deleted at once; this catches what a failure left behind).
    cleanup_after_hours: float = Field(24.0, gt=0, le=24 * 30)
    # The bucket's lifecycle rule, a safety net under the cleanup: longer than an email can
    # live (incoming retention, then the dead-letter queue's 14 days, then a day).
    lifecycle_days: int = Field(40, ge=1, le=3_650)


RATE = r"^\d+/(s|sec|second|m|min|minute|h|hour|d|day)$"


def base64_size(size: int) -> int:
    """How many characters ``size`` bytes take in base64."""
    return -(-size // 3) * 4


# Content types an attachment may not have, and file name endings, whatever their type
# (what SES refuses to carry, and what mail filters quarantine): executables and scripts.
DENIED_CONTENT_TYPES = [
    "application/x-msdownload",
    "application/x-msdos-program",
    "application/x-dosexec",
    "application/x-executable",
    "application/x-sharedlib",
    "application/vnd.microsoft.portable-executable",
    "application/x-msi",
    "application/x-ms-installer",
    "application/java-archive",
    "application/x-sh",
    "application/x-bat",
    "application/x-csh",
    "application/hta",
    "application/x-ms-shortcut",
    "text/javascript",
    "application/javascript",
    "text/vbscript",
]
DENIED_EXTENSIONS = [
    "ade", "adp", "app", "bat", "cmd", "com", "cpl", "dll", "exe", "hta", "jar", "js",
    "jse", "lnk", "msc", "msi", "msp", "pif", "ps1", "reg", "scr", "sh", "vb", "vbe",
    "vbs", "wsc", "wsf", "wsh",
]  # fmt: skip


class ApiConfig(Section):
    # 15 MiB: max_attachments_bytes (10 MiB) in base64 and BODY_ROOM_BESIDE_ATTACHMENTS.
    max_body_size_bytes: int = Field(15 * MIB, gt=0, le=MAX_BODY_SIZE_LIMIT)
    # Recipients of one email, to, cc and bcc together (SES's own limit is 50).
    max_recipients: int = Field(50, ge=1, le=50)
    # Attachments' decoded sizes: each file, all of them together, and how many.
    max_attachment_bytes: int = Field(10 * MIB, gt=0)
    max_attachments_bytes: int = Field(10 * MIB, gt=0, le=40 * MIB)
    max_attachments: int = Field(20, ge=0, le=100)
    denied_content_types: list[str] = Field(default_factory=lambda: list(DENIED_CONTENT_TYPES))
    denied_extensions: list[str] = Field(default_factory=lambda: list(DENIED_EXTENSIONS))
    # The custom headers a caller may set (case-insensitive); every other one is a 422.
    allowed_headers: list[str] = Field(
        default_factory=lambda: ["List-Unsubscribe", "List-Unsubscribe-Post", "X-Entity-Ref-ID"]
    )
    # Tags: short strings (SendGrid takes 10 categories of up to 255 characters).
    max_tags: int = Field(10, ge=0, le=10)
    max_tag_length: int = Field(64, ge=1, le=255)
    # Metadata: a flat map of strings, at most this many bytes as JSON.
    max_metadata_bytes: int = Field(2_048, ge=0, le=10_000)
    # How long an Idempotency-Key is remembered (and its request's answer replayed).
    idempotency_retention_hours: float = Field(24.0, gt=0, le=24 * 30)

    @field_validator("allowed_headers")
    @classmethod
    def _not_gomails_own(cls, names: list[str]) -> list[str]:
        # A caller's From or Bcc would override what the API validated (the sender policy,
        # the recipients): the headers Gomail writes are never a caller's to set.
        from dispatch.providers.mime import RESERVED_HEADERS

        reserved = [name for name in names if name.lower() in RESERVED_HEADERS]
        if reserved:
            raise ValueError(
                f"headers Gomail writes itself cannot be allowed: {', '.join(reserved)}"
            )
        if any(not re.fullmatch(r"[!-9;-~]+", name) for name in names):
            raise ValueError("a header name is printable ASCII without a colon or spaces")
        return names

    # Deeper JSON is refused before validation: nothing legitimate nests like that.
    max_json_depth: int = Field(10, ge=2, le=100)
    # Off only on a trusted network: the API is otherwise an open relay.
    require_auth: bool = True
    # Sender addresses ("a@example.com") or domains ("example.com") every key and user may
    # send from; a key or user may be allowed more in the admin. Anything else is a 422.
    allowed_senders: list[str] = Field(default_factory=lambda: ["example.com"])
    # DRF rates ("600/min"), counted in the shared cache, so they hold across API processes.
    rate_limit_per_key: str = Field("600/min", pattern=RATE)
    rate_limit_per_user: str = Field("120/min", pattern=RATE)
    # How long a SendMessageBatch leaving an API process waits for requests already being
    # accepted by that process (never when none is): a busy process sends fuller batches.
    sqs_batch_linger_milliseconds: float = Field(2.0, ge=0, le=50)
    # Origins allowed to call the API from a browser on another origin (CORS); empty: none.
    cors_allowed_origins: list[HttpUrl] = Field(default_factory=list)


class PipelineConfig(Section):
    # The original's minimum_iteration_duration_milliseconds.
    interval_milliseconds: int = Field(2_000, ge=100, le=600_000)
    batch_size: int = Field(10, ge=1, le=100)
    max_readers: int = Field(8, ge=1, le=64)
    # Each reader receives up to 10 messages this many times in a run (stopping once a queue
    # runs dry): a run may read max_readers * 10 * this per queue, within the providers'
    # capacity (backpressure), so a deep backlog is not held to the pipeline interval.
    receives_per_reader: int = Field(10, ge=1, le=100)
    max_in_flight_per_queue: int = Field(120_000, ge=1, le=120_000)
    # How long one run may hold the pipeline lock; a crashed run's lock frees itself after it.
    lease_seconds: int = Field(120, ge=5, le=3_600)
    # A message that failed transiently waits base * 2^(receives-1) seconds, up to the max,
    # before it is read again; SQS caps a visibility timeout at 12 hours.
    backoff_base_seconds: int = Field(10, ge=0, le=43_200)
    backoff_max_seconds: int = Field(900, ge=0, le=43_200)


class DeliveryConfig(Section):
    # After this long (from acceptance) an email no provider took goes to the dead-letter
    # queue with its reason, by Gomail, rather than wait out SQS's redrive or retention.
    max_age_hours: float = Field(72.0, gt=0, le=24 * 13)


class HealthConfig(Section):
    healthy_threshold: PositiveInt = 3
    unhealthy_threshold: PositiveInt = 3
    # A provider worker process skips a provider's calls for breaker_cooldown_seconds after
    # this many failed in a row (dispatch/breaker.py): a dead provider stops getting calls
    # before health has folded a single batch.
    breaker_failures: int = Field(3, ge=1, le=1_000)
    breaker_cooldown_seconds: float = Field(5.0, gt=0, le=300)
    # At low traffic (fewer messages in a run than healthy providers plus one) an unhealthy
    # provider still gets a probe on one run in this many, or it would never recover.
    # (1 would probe on every run: a lone email would always go to the unhealthy provider.)
    low_traffic_probe_every_runs: int = Field(3, ge=2, le=1_000)


class ProviderConfig(Section):
    """What every provider instance has; each provider module extends it with its own options
    (``dispatch/providers/<type>.py``) and a ``type`` literal naming it."""

    # Which provider module: a built-in one ("ses", "sendgrid", "smtp") or a dotted module
    # path declaring ``PROVIDER`` (``dispatch.providers.base.ProviderType``).
    type: str
    enabled: bool = True
    # Sends per second across every worker process (SES's account maximum, for one); none: no
    # limit of ours.
    max_send_rate_per_second: float | None = Field(None, gt=0, le=10_000)
    # Backpressure: messages dispatched to this provider and not yet settled, at most.
    max_in_flight: int = Field(500, ge=1, le=100_000)
    # Emails of one batch sent at once by a worker.
    send_concurrency: int = Field(10, ge=1, le=100)
    # Its share of the traffic among the healthy providers, relative to theirs (equal: 1 each).
    weight: float = Field(1.0, gt=0, le=1_000)


# The built-in provider types, each a module of dispatch/providers/.
BUILT_IN_PROVIDER_TYPES = ("ses", "sendgrid", "smtp")
# The embedded defaults (make run, no providers: section): one instance of each built-in type,
# named after it.
DEFAULT_PROVIDERS: dict[str, dict[str, Any]] = {name: {} for name in BUILT_IN_PROVIDER_TYPES}
# What the original's two sections meant, and still mean: SES and SendGrid, one each.
LEGACY_PROVIDERS: dict[str, dict[str, Any]] = {"ses": {}, "sendgrid": {}}
PROBLEM_SEPARATOR = "\n"
# As long as the database's provider columns allow (32).
_PROVIDER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def _json_or_text(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def provider_type(type_name: str) -> Any:
    """The ``ProviderType`` a provider module declares (``PROVIDER``), by its config ``type``."""
    module_name = f"dispatch.providers.{type_name}" if "." not in type_name else type_name
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"unknown provider type {type_name!r} ({exc})") from None
    declared = getattr(module, "PROVIDER", None)
    if declared is None:
        raise ValueError(f"provider module {module_name} declares no PROVIDER")
    return declared


class Providers(Mapping[str, ProviderConfig]):
    """The provider instances by name, in configuration order (a provider is also reachable
    as an attribute: ``providers.ses``)."""

    def __init__(self, instances: Mapping[str, ProviderConfig]) -> None:
        self._instances = dict(instances)

    def __getitem__(self, name: str) -> ProviderConfig:
        return self._instances[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._instances)

    def __len__(self) -> int:
        return len(self._instances)

    def __getattr__(self, name: str) -> ProviderConfig:
        try:
            return self.__dict__["_instances"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Providers) and self._instances == other._instances

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Providers({self._instances!r})"

    def model_copy(self, update: Mapping[str, ProviderConfig] | None = None) -> Providers:
        """These instances with some replaced (as a pydantic section's ``model_copy``)."""
        return Providers({**self._instances, **(update or {})})

    @classmethod
    def parse(cls, raw: Any) -> Providers:
        """Validate the ``providers:`` section: each entry by its type's own model.

        An entry without ``type`` named after a built-in type is that type. A section made
        only of such entries is the original's: it changes the SES and SendGrid instances and
        keeps the other of the two (``ses:`` alone still means SendGrid too, as it did); the
        SMTP relay is there only when listed. A section with any ``type`` is the whole list of
        instances. No section at all: the three defaults.
        """
        if isinstance(raw, Providers):
            return raw
        if not isinstance(raw, Mapping):
            raise ValueError("providers must be a mapping of provider names to their options")
        if not raw:
            entries: dict[str, Any] = dict(DEFAULT_PROVIDERS)
        elif all(
            isinstance(options, Mapping) and "type" not in options and name in DEFAULT_PROVIDERS
            for name, options in raw.items()
        ):
            entries = {**LEGACY_PROVIDERS, **raw}
        else:
            entries = dict(raw)
        instances: dict[str, ProviderConfig] = {}
        problems = []
        for name, options in entries.items():
            if not isinstance(name, str) or not _PROVIDER_NAME.match(name):
                problems.append(f"{name!r}: a provider name is lower case letters, digits, - _")
                continue
            if isinstance(options, ProviderConfig):
                instances[name] = options
                continue
            if options is not None and not isinstance(options, Mapping):
                problems.append(f"{name}: its options must be a mapping (type: ..., ...)")
                continue
            # An environment override of a list or a mapping arrives as its JSON text.
            options = {key: _json_or_text(value) for key, value in dict(options or {}).items()}
            type_name = str(options.setdefault("type", name))
            try:
                model = provider_type(type_name).config
                instances[name] = model.model_validate(options)
            except ValidationError as exc:
                problems += [
                    f"{name}.{'.'.join(str(p) for p in item['loc'])}: {item['msg']}"
                    for item in exc.errors()
                ]
            except ValueError as exc:
                problems.append(f"{name}.type: {exc}")
        if problems:
            raise ValueError(PROBLEM_SEPARATOR.join(problems))
        return cls(instances)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        return core_schema.no_info_plain_validator_function(cls.parse)


class SecurityConfig(Section):
    # Production: secure cookies, HSTS, and start-up refuses DEBUG or a default secret key.
    production: bool = False
    hsts_seconds: int = Field(31_536_000, ge=0)
    # SameSite of the session and CSRF cookies. "None" only for a UI on another site (another
    # registrable domain) than the API; browsers keep such cookies only when they are Secure,
    # which production mode makes them.
    cookie_samesite: Literal["Lax", "Strict", "None"] = "Lax"
    # The UI's Content-Security-Policy (the bundle has no inline script).
    content_security_policy: str = (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    )
    # Failed sign-ins (admin and UI) per username and per address before a lockout
    # (django-axes, gomail_site/lockout.py), and how long one lasts.
    admin_login_attempts: int = Field(5, ge=1, le=100)
    admin_lockout_seconds: int = Field(900, ge=1, le=86_400)

    @model_validator(mode="after")
    def _cross_site_cookies_are_secure(self) -> SecurityConfig:
        # A browser drops a SameSite=None cookie that is not Secure: sign-in would silently
        # never stick. Only production mode marks the cookies Secure.
        if self.cookie_samesite == "None" and not self.production:
            raise ValueError('cookie_samesite "None" needs production: true (Secure cookies)')
        return self


class RecordsConfig(Section):
    # `manage.py cleanup_emails` deletes final email records older than this.
    retention_days: int = Field(90, ge=1, le=3650)


class LoggingConfig(Section):
    # "json": one JSON object per line, for log shippers; "console": for people.
    format: Literal["console", "json"] = "console"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class CeleryConfig(Section):
    """Celery's broker is SQS too; its queues are ``pipeline`` and one per provider."""

    queue_name_prefix: str = Field("gomail-celery-", pattern=r"^[A-Za-z0-9_-]*$", max_length=40)
    # Longer than the longest task, or a running task is handed to a second worker: at least
    # 3 times the slowest provider call, as the incoming queues' (checked below).
    visibility_timeout_seconds: int = Field(600, ge=10, le=43_200)
    wait_time_seconds: int = Field(1, ge=0, le=20)
    polling_interval_seconds: float = Field(0.5, ge=0, le=60)
    # Production: the queues' URLs (kombu's predefined queues), so workers never list or
    # create queues. Empty: queues are created by name with the prefix.
    queue_urls: dict[str, HttpUrl] = Field(default_factory=dict)


class GomailConfig(BaseSettings):
    """Every key of the YAML file, with its embedded local default."""

    model_config = SettingsConfigDict(
        extra="forbid", frozen=True, env_prefix="GOMAIL_", env_nested_delimiter="__"
    )

    aws: AwsConfig = AwsConfig()
    sqs: SqsConfig = SqsConfig()
    api: ApiConfig = ApiConfig()
    payloads: PayloadsConfig = PayloadsConfig()
    pipeline: PipelineConfig = PipelineConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    health: HealthConfig = HealthConfig()
    providers: Providers = Field(default_factory=lambda: Providers.parse({}))
    celery: CeleryConfig = CeleryConfig()
    logging: LoggingConfig = LoggingConfig()
    records: RecordsConfig = RecordsConfig()
    security: SecurityConfig = SecurityConfig()

    @model_validator(mode="after")
    def _every_celery_queue_has_its_url(self) -> GomailConfig:
        # Production names every queue (kombu's predefined queues): one left out would take
        # no task, and the pipeline's batches for it would wait out their visibility timeout.
        urls = self.celery.queue_urls
        missing = [name for name in self.celery_queues if urls and name not in urls]
        if missing:
            raise ValueError(
                f"celery.queue_urls has no URL for the queue(s) {', '.join(missing)} "
                "(the pipeline's and one per provider instance)"
            )
        return self

    @model_validator(mode="after")
    def _attachments_fit(self) -> GomailConfig:
        api = self.api
        needed = base64_size(api.max_attachments_bytes) + BODY_ROOM_BESIDE_ATTACHMENTS
        if api.max_body_size_bytes < needed:
            raise ValueError(
                f"api.max_body_size_bytes ({api.max_body_size_bytes}) must hold "
                f"api.max_attachments_bytes in base64 and {BODY_ROOM_BESIDE_ATTACHMENTS} bytes "
                f"more: at least {needed}"
            )
        if api.max_attachment_bytes > api.max_attachments_bytes:
            raise ValueError("api.max_attachment_bytes must not exceed api.max_attachments_bytes")
        lives = self.sqs.message_retention_seconds + SQS_MAX_RETENTION_SECONDS + 86_400
        if self.payloads.lifecycle_days * 86_400 < lives:
            raise ValueError(
                f"payloads.lifecycle_days must outlast an email's life (incoming retention, "
                f"the dead-letter queue's 14 days and a day): at least {-(-lives // 86_400)}"
            )
        return self

    @model_validator(mode="after")
    def _timings_fit(self) -> GomailConfig:
        # A batch must be settled before its messages become visible again (DESIGN.md 8).
        enabled = [provider for provider in self.providers.values() if provider.enabled]
        # The slowest call of any provider an email may be tried on (each type knows its own).
        slowest_send = max(
            (provider_type(p.type).slowest_call_seconds(p, self) for p in enabled), default=0.0
        )
        # A send_batch task sends and settles one batch: its emails in rounds of the provider's
        # send_concurrency, each up to one call per enabled provider (its own, then every other
        # one after a permanent rejection: dispatch/delivery.py), plus one call's time for the
        # claims and the settlement.
        rounds = max(
            (math.ceil(self.pipeline.batch_size / p.send_concurrency) for p in enabled),
            default=1,
        )
        calls_per_delivery = max(1, len(self.enabled_providers))
        calls = rounds * calls_per_delivery + 1
        for key, visibility in (
            ("sqs", self.sqs.visibility_timeout_seconds),
            ("celery", self.celery.visibility_timeout_seconds),
        ):
            if visibility < calls * slowest_send:
                raise ValueError(
                    f"{key}.visibility_timeout_seconds must be at least {calls} times the "
                    f"slowest provider call ({slowest_send:g} s): {rounds} round(s) of "
                    f"{calls_per_delivery} calls for a batch of pipeline.batch_size, plus one"
                )
        if self.pipeline.backoff_max_seconds < self.pipeline.backoff_base_seconds:
            raise ValueError("pipeline.backoff_max_seconds must be >= backoff_base_seconds")
        self._give_up_comes_first()
        return self

    def _give_up_comes_first(self) -> None:
        """Gomail's give-up acts before any SQS timer: the last attempt after the max age (one
        backoff and one visibility timeout later, at the most) still finds the message in
        its queue, and the backoff reaches the max age before SQS's redrive would."""
        max_age = self.delivery.max_age_hours * 3600
        latest = max_age + self.pipeline.backoff_max_seconds + self.sqs.visibility_timeout_seconds
        if latest >= self.sqs.message_retention_seconds:
            raise ValueError(
                "sqs.message_retention_seconds must exceed delivery.max_age_hours plus "
                f"pipeline.backoff_max_seconds and sqs.visibility_timeout_seconds ({latest:g} s)"
            )
        receives = receives_to_reach(
            max_age, self.pipeline.backoff_base_seconds, self.pipeline.backoff_max_seconds
        )
        allowed = int(self.sqs.max_receive_count * RECEIVES_SHARE_FOR_BACKOFF)
        if receives is None or receives > allowed:
            raise ValueError(
                f"the backoff (pipeline.backoff_base_seconds, backoff_max_seconds) takes "
                f"{receives or 'endless'} receives to reach delivery.max_age_hours; it must "
                f"take at most {allowed} (half of sqs.max_receive_count)"
            )

    @property
    def celery_queues(self) -> list[str]:
        """Celery's queues: the pipeline's, then one per configured provider (named after it),
        a disabled one's too: the batches dispatched to it before it was disabled are still
        consumed (and sent by the providers left)."""
        return [PIPELINE_QUEUE, *self.providers]

    @property
    def enabled_providers(self) -> list[str]:
        """Names of the enabled providers, in configuration order."""
        return [name for name, provider in self.providers.items() if provider.enabled]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values arrive as init kwargs; the environment overrides them per key.
        return (env_settings, init_settings)


def receives_to_reach(seconds: float, base: int, cap: int) -> int | None:
    """How many failed receives the backoff (``base * 2^(n-1)`` up to ``cap``, as
    ``dispatch.settlement.backoff_seconds``) takes to span ``seconds``; None if it never
    does (no backoff at all). Pure."""
    if seconds <= 0:
        return 0
    if base <= 0 or cap <= 0:
        return None
    waited, receives, delay = 0, 0, base
    while delay < cap and waited < seconds:  # the doubling part
        waited, receives, delay = waited + delay, receives + 1, delay * 2
    if waited >= seconds:
        return receives
    return receives + math.ceil((seconds - waited) / cap)


def _format_errors(error: ValidationError, source: str) -> str:
    lines = [f"invalid configuration (from {source} and any GOMAIL_* environment overrides):"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        if item["loc"] == ("providers",) and item["type"] == "value_error":
            # Each instance was validated by its own type's model: one line per problem.
            problems = str(item["ctx"]["error"]).split(PROBLEM_SEPARATOR)
            lines += [f"  providers.{problem}" for problem in problems]
            continue
        lines.append(f"  {key}: {item['msg']}")
    return "\n".join(lines)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"configuration file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"configuration file {path} must hold a mapping of sections")
    return data


def load_config(path: str | os.PathLike[str] | None = None) -> GomailConfig:
    """Load and validate the configuration.

    ``path`` defaults to ``$GOMAIL_CONFIG``, else ``./config.yaml``. A path named explicitly
    (argument or environment) must exist; the default one may be absent, which means the
    embedded defaults. Raises ``ConfigError`` naming each invalid key.
    """
    explicit = path if path is not None else os.environ.get("GOMAIL_CONFIG")
    file_path = Path(explicit) if explicit else DEFAULT_CONFIG_PATH
    if file_path.exists() or explicit:
        data, source = _read_yaml(file_path), str(file_path)
    else:
        data, source = {}, "the embedded defaults"
    try:
        return GomailConfig(**data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None


@lru_cache(maxsize=1)
def get_config() -> GomailConfig:
    """The process's configuration, loaded once."""
    return load_config()
