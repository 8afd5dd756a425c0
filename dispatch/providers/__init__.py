"""Email providers, one module each behind ``Provider`` (as django-anymail has one backend per ESP).

Every provider is constructed from plain values and raises only ``ProviderError`` from ``send``.
Each module also declares ``PROVIDER`` (``base.ProviderType``): its configuration model, its
secrets, how it is built and how long its slowest call may take. The configuration names a
module by its ``type`` (``gomail_site.config.provider_type``); nothing else names a provider.
"""

from dispatch.providers.base import OutgoingEmail, Provider, ProviderType, Secret, SendResult
from dispatch.providers.errors import ErrorKind, ProviderError

__all__ = [
    "ErrorKind",
    "OutgoingEmail",
    "Provider",
    "ProviderError",
    "ProviderType",
    "Secret",
    "SendResult",
]
