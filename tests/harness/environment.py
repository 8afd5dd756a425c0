"""The environment and configuration of the service's processes started by the tests.

``service_environment`` is what every subprocess gets (the test database, the SendGrid
stand-in, a Celery queue prefix, short timings); ``config_env`` turns configuration overrides
into ``GOMAIL_*`` variables and ``with_overrides`` applies the same overrides to this process's
``settings.GOMAIL``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

# Short timings, within each setting's minimum (see gomail_site/config.py). Applied to every
# subprocess through the environment and to this process's settings by the fixtures.
FAST_TIMINGS: dict[str, dict[str, Any]] = {
    "sqs": {"visibility_timeout_seconds": 30},
    "pipeline": {"backoff_base_seconds": 1, "backoff_max_seconds": 2},
    # A 2 s backoff reaches 15 minutes in 451 receives, within half of max_receive_count.
    "delivery": {"max_age_hours": 0.25},
    "celery": {"visibility_timeout_seconds": 60},
}
# Never passed on to a subprocess: pytest's own, and the database of this process (each
# subprocess gets the test database's from ``database_environment``).
_NOT_INHERITED = ("PYTEST_CURRENT_TEST", "PYTEST_VERSION", "DATABASE_URL", "GOMAIL_SQLITE_PATH")


def config_env(overrides: Mapping[str, Any], _path: tuple[str, ...] = ()) -> dict[str, str]:
    """``{"pipeline": {"backoff_base_seconds": 1}}`` -> ``{"GOMAIL_PIPELINE__BACKOFF_BASE_SECONDS":
    "1"}``; nested mappings (``providers.sendgrid.host``) become nested keys."""
    env: dict[str, str] = {}
    for key, value in overrides.items():
        path = (*_path, key)
        if isinstance(value, Mapping):
            env.update(config_env(value, path))
        else:
            text = json.dumps(value) if isinstance(value, bool | list) else str(value)
            env["GOMAIL_" + "__".join(part.upper() for part in path)] = text
    return env


def with_overrides(model: Any, overrides: Mapping[str, Any]) -> Any:
    """A copy of a (frozen) pydantic configuration with nested ``overrides`` applied."""
    updates = {}
    for key, value in overrides.items():
        current = getattr(model, key)
        if isinstance(value, Mapping) and hasattr(current, "model_copy"):
            updates[key] = with_overrides(current, value)
        else:
            updates[key] = value
    return model.model_copy(update=updates)


def merge(*overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge configuration overrides, later ones winning."""
    merged: dict[str, Any] = {}
    for layer in overrides:
        for key, value in layer.items():
            if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
                merged[key] = merge(merged[key], value)
            else:
                merged[key] = dict(value) if isinstance(value, Mapping) else value
    return merged


def database_environment() -> dict[str, str]:
    """How a subprocess reaches the test database this process uses (SQLite file or
    PostgreSQL test database); call after the test database was set up."""
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return {"GOMAIL_SQLITE_PATH": str(db["NAME"])}
    if "postgresql" not in db["ENGINE"]:
        raise RuntimeError(f"no subprocess database URL for engine {db['ENGINE']}")
    credentials = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = db.get("HOST") or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    at = "@" if credentials else ""
    return {"DATABASE_URL": f"postgres://{credentials}{at}{host}{port}/{db['NAME']}"}


def child_environment(overrides: Mapping[str, Any] | None = None) -> dict[str, str]:
    """This process's environment (the test moto's endpoint, fake AWS credentials,
    GOMAIL_CONFIG) with the production settings module on the test database, and
    ``overrides`` as ``GOMAIL_*`` variables."""
    env = {name: value for name, value in os.environ.items() if name not in _NOT_INHERITED}
    env.update(database_environment())
    env["DJANGO_SETTINGS_MODULE"] = "gomail_site.settings"
    env.update(config_env(overrides or {}))
    return env


def service_environment(
    *,
    queue_prefix: str,
    sendgrid_url: str,
    sendgrid_api_key: str,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The environment of a Gomail service process (worker, beat, gunicorn) in the tests:
    ``child_environment`` with the SendGrid stand-in, a Celery queue prefix and the fast
    timings, then ``overrides``."""
    env = child_environment(
        merge(
            FAST_TIMINGS,
            {"celery": {"queue_name_prefix": queue_prefix}},
            {"providers": {"sendgrid": {"host": sendgrid_url}}},
            overrides or {},
        )
    )
    env.update(
        {"SENDGRID_API_KEY": sendgrid_api_key, "GOMAIL_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"}
    )
    return env
