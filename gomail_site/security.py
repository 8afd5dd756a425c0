"""Security settings derived from the configuration and the environment (used by ``settings``).

Nothing here imports Django's apps: ``gomail_site.settings`` calls it while it is being
imported. The sign-in lockout, which needs the database, is ``gomail_site.lockout`` (django-axes).

Production (``security.production: true``) refuses to start, by raising
``ImproperlyConfigured`` while the settings are imported, when the environment is not fit for
it: every process (gunicorn, the Celery workers and beat, every ``manage.py`` command) imports
the settings before it does anything, whereas system checks run only for some ``manage.py``
commands and never under gunicorn or Celery.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from csp.utils import DEFAULT_DIRECTIVES
from django.core.exceptions import ImproperlyConfigured

from gomail_site.config import GomailConfig, SecurityConfig, provider_type

# Signs local sessions only. Django's own `check --deploy` rejects this prefix too.
DEVELOPMENT_SECRET_KEY = "django-insecure-gomail-local-development-only"  # noqa: S105
# Django's `check --deploy` threshold (security.W009): at least 50 characters, 5 different.
MIN_SECRET_KEY_LENGTH = 50
MIN_SECRET_KEY_UNIQUE_CHARACTERS = 5

# Paths a load balancer or Prometheus reaches over plain HTTP inside the network: never
# redirected to HTTPS (SECURE_REDIRECT_EXEMPT matches the path without its leading slash).
PLAIN_HTTP_PATHS = [r"^healthz$", r"^readyz$", r"^metrics$"]

# The API's paths, the only ones a browser on another origin may call (CORS).
API_URLS_REGEX = r"^/(?:session(?:/csrf)?$|email/|providers$|api/schema$)"


def _secret_key_problem(key: str | None) -> str | None:
    if not key:
        return "DJANGO_SECRET_KEY is not set"
    if key == DEVELOPMENT_SECRET_KEY or key.startswith("django-insecure-"):
        return "DJANGO_SECRET_KEY is the development default"
    if len(key) < MIN_SECRET_KEY_LENGTH or len(set(key)) < MIN_SECRET_KEY_UNIQUE_CHARACTERS:
        return (
            f"DJANGO_SECRET_KEY is too weak: it needs at least {MIN_SECRET_KEY_LENGTH} "
            f"characters, {MIN_SECRET_KEY_UNIQUE_CHARACTERS} of them different "
            f"(it has {len(key)})"
        )
    return None


def production_problems(environ: Mapping[str, str], config: GomailConfig) -> list[str]:
    """What keeps this environment from running in production; empty when it is fit."""
    problems = []
    if environ.get("DJANGO_DEBUG", "0") == "1":
        problems.append("DJANGO_DEBUG=1: DEBUG must be off in production")
    secret_key_problem = _secret_key_problem(environ.get("DJANGO_SECRET_KEY"))
    if secret_key_problem:
        problems.append(secret_key_problem)
    if not parse_hosts(environ.get("DJANGO_ALLOWED_HOSTS", "")):
        problems.append(
            "DJANGO_ALLOWED_HOSTS is not set (the host names this service answers to, "
            "comma-separated)"
        )
    for name in config.enabled_providers:
        instance = config.providers[name]
        declared = provider_type(instance.type)
        problems += declared.production_problems(name, instance)
        for secret in declared.secrets(instance):
            value = environ.get(secret.env, "")
            if not value or value == secret.development_default:
                problems.append(
                    f"{secret.env} is not set (provider {name} is enabled: set it, or "
                    f"providers.{name}.enabled: false)"
                )
    return problems


def refuse_unfit_production(environ: Mapping[str, str], config: GomailConfig) -> None:
    """Raise ``ImproperlyConfigured`` naming everything production lacks, if anything."""
    problems = production_problems(environ, config)
    if problems:
        raise ImproperlyConfigured(
            "Gomail refuses to start in production (security.production: true):\n"
            + "\n".join(f"  - {problem}" for problem in problems)
        )


def parse_hosts(value: str) -> list[str]:
    return [host.strip() for host in value.split(",") if host.strip()]


def proxy_hops(environ: Mapping[str, str]) -> int:
    """``DJANGO_TRUSTED_PROXY_HOPS``: how many reverse proxies append to X-Forwarded-For."""
    raw = environ.get("DJANGO_TRUSTED_PROXY_HOPS", "0").strip() or "0"
    if not raw.isdigit():
        raise ImproperlyConfigured(
            f"DJANGO_TRUSTED_PROXY_HOPS must be a whole number (0: no proxy), not {raw!r}"
        )
    return int(raw)


def production_settings(security: SecurityConfig) -> dict[str, Any]:
    """The settings that only production has (it runs behind TLS)."""
    return {
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_HSTS_SECONDS": security.hsts_seconds,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_SSL_REDIRECT": True,
        "SECURE_REDIRECT_EXEMPT": PLAIN_HTTP_PATHS,
        # TLS ends at the proxy in front of gunicorn, which tells us the request came over
        # HTTPS with this header. Safe only when that proxy sets (or strips) it on every
        # request and gunicorn cannot be reached around the proxy.
        "SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https"),
        # HSTS preload is a commitment for the whole registered domain, made by its owner at
        # hstspreload.org, not by one service on a host name: `check --deploy` asks
        # (security.W021) and the answer is no.
        "SILENCED_SYSTEM_CHECKS": ["security.W021"],
    }


def csp_directives(policy: str) -> dict[str, list[str] | bool | None]:
    """``security.content_security_policy`` (a header value) as django-csp's DIRECTIVES.

    Every directive the policy does not name is None, so that django-csp adds none of its own
    defaults: the header says exactly what the configuration says.
    """
    directives: dict[str, list[str] | bool | None] = {}
    for part in policy.split(";"):
        words = part.split()
        if not words:
            continue
        name, values = words[0].lower(), words[1:]
        where = f"security.content_security_policy: directive {name!r}"
        if name not in DEFAULT_DIRECTIVES:
            raise ImproperlyConfigured(f"{where} is unknown")
        if name in directives:
            raise ImproperlyConfigured(f"{where} appears twice")
        # Directives without a value (upgrade-insecure-requests) are switches in django-csp.
        directives[name] = values or True
    if not directives:
        raise ImproperlyConfigured("security.content_security_policy: no directive")
    return {name: None for name in DEFAULT_DIRECTIVES} | directives


def origins(urls: list[Any]) -> list[str]:
    """Configured origins (``https://ui.example.org/``) as ``scheme://host[:port]``."""
    result = []
    for url in urls:
        parts = urlsplit(str(url))
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in result:
            result.append(origin)
    return result
