"""A provider the tests add the way anyone adds one: this module and a configuration entry
(``type: tests.operations.notebook_provider``), no other file changed. It keeps what it is
given in memory (``SENT``) and fails while ``FAILING`` is set."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from typing import Literal

from pydantic import Field

from dispatch.providers import (
    ErrorKind,
    OutgoingEmail,
    Provider,
    ProviderError,
    ProviderType,
    SendResult,
)
from gomail_site.config import ProviderConfig

TYPE = "tests.operations.notebook_provider"
SENT: list[OutgoingEmail] = []
FAILING = threading.Event()


class NotebookProvider(Provider):
    def __init__(self, name: str, label: str) -> None:
        self.name, self.label = name, label

    def build_payload(self, email: OutgoingEmail) -> OutgoingEmail:
        return email

    def post(self, payload: OutgoingEmail) -> str:
        if FAILING.is_set():
            raise ConnectionError("the notebook is closed")
        SENT.append(payload)
        return f"{self.label}-{uuid.uuid4().hex[:8]}"

    def parse_answer(self, answer: str) -> SendResult:
        return SendResult(answer)

    def classify_error(self, error: Exception) -> ProviderError:
        return self.error(ErrorKind.TRANSIENT, str(error))


class NotebookConfig(ProviderConfig):
    type: Literal["tests.operations.notebook_provider"] = TYPE
    label: str = Field("note", min_length=1)


def _build(name: str, config: NotebookConfig, environ: Mapping[str, str]) -> NotebookProvider:
    if config.label == "unbuildable":
        raise ValueError("this notebook cannot be built")
    return NotebookProvider(name, config.label)


PROVIDER = ProviderType(
    config=NotebookConfig, build=_build, slowest_call_seconds=lambda config, gomail: 1.0
)
