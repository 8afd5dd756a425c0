"""Email providers, one module each behind ``Provider`` (as django-anymail has one backend per ESP).

Every provider is constructed from plain values and raises only ``ProviderError`` from ``send``.
``PROVIDER_CLASSES`` maps the configuration's provider names to their classes.
"""

from dispatch.providers.base import OutgoingEmail, Provider, SendResult
from dispatch.providers.errors import ErrorKind, ProviderError
from dispatch.providers.sendgrid import SendGridProvider
from dispatch.providers.ses import SesProvider

PROVIDER_CLASSES: dict[str, type[Provider]] = {
    SesProvider.name: SesProvider,
    SendGridProvider.name: SendGridProvider,
}

__all__ = [
    "PROVIDER_CLASSES",
    "ErrorKind",
    "OutgoingEmail",
    "Provider",
    "ProviderError",
    "SendGridProvider",
    "SendResult",
    "SesProvider",
]
