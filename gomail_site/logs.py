"""Structured logging for every process (structlog over the standard library).

Every log line, ours, Django's and Celery's, goes through one structlog formatter: JSON
objects (``logging.format: json``) or readable lines (``console``). Code that handles one email
binds its id (``bound_message``) so every line about it carries ``message_id``, from the API
through the pipeline to the worker. Bodies, keys and passwords are never logged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog

from gomail_site.config import LoggingConfig

_SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def logging_config(config: LoggingConfig) -> dict[str, Any]:
    """Django's LOGGING for ``config``; also configures structlog's own loggers."""
    renderer = (
        structlog.processors.JSONRenderer()
        if config.format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*_SHARED_PROCESSORS, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    renderer,
                ],
                "foreign_pre_chain": _SHARED_PROCESSORS,
            }
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": config.level},
        "loggers": {
            "botocore": {"level": "WARNING"},
            "urllib3": {"level": "WARNING"},
            # Its per-request lines say nothing the access log does not.
            "django.request": {"level": "ERROR"},
        },
    }


@contextmanager
def bound_message(message_id: str | None) -> Iterator[None]:
    """Every log line inside the block carries ``message_id``."""
    if message_id is None:
        yield
        return
    with structlog.contextvars.bound_contextvars(message_id=message_id):
        yield
