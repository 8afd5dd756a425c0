"""Django settings for Gomail.

Everything that is not a secret comes from the validated YAML configuration
(``gomail_site.config``); secrets come from the environment only.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

from gomail_site import security
from gomail_site.config import get_config
from gomail_site.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent
GOMAIL = get_config()

# Production refuses to start (ImproperlyConfigured, here, in every process: gunicorn, Celery,
# every manage.py command) with DEBUG on, without a strong DJANGO_SECRET_KEY, without
# DJANGO_ALLOWED_HOSTS, or without an enabled provider's secret (SENDGRID_API_KEY, ...).
PRODUCTION = GOMAIL.security.production
if PRODUCTION:
    security.refuse_unfit_production(os.environ, GOMAIL)

DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
# The development key only ever signs local sessions; production sets DJANGO_SECRET_KEY.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", security.DEVELOPMENT_SECRET_KEY)
ALLOWED_HOSTS = security.parse_hosts(os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost"))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "csp",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "emails",
    "dispatch",
    # The sign-in lockout (gomail_site/lockout.py): its attempts are models with migrations.
    "axes",
]

MIDDLEWARE = [
    "gomail_site.metrics.ApiLatencyMiddleware",
    # Before anything that can answer (the HTTPS redirect, whitenoise, CommonMiddleware).
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # The headers of the UI's pages too, which whitenoise answers below without a view.
    "csp.middleware.CSPMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Last: turns a sign-in that axes refused or locked out into the 429 of
    # gomail_site.lockout.lockout_response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "gomail_site.urls"
WSGI_APPLICATION = "gomail_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # The admin's page for a locked-out sign-in (gomail_site/lockout.py).
        "DIRS": [BASE_DIR / "gomail_site" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def _database() -> dict:
    url = os.environ.get("DATABASE_URL")
    if url:
        return dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
    # The embedded default. WAL lets readers run beside the writer; IMMEDIATE takes the write
    # lock at BEGIN so two writers queue on the busy timeout instead of failing mid-transaction.
    return {
        "ENGINE": "django.db.backends.sqlite3",
        # One connection per thread kept across requests, not one opened per request.
        "CONN_MAX_AGE": None,
        "NAME": os.environ.get("GOMAIL_SQLITE_PATH", str(BASE_DIR / "gomail.sqlite3")),
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {
    "default": {
        # Whatever a library caches; nothing of Gomail's delivery state (see "dispatch").
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "gomail_cache",
        "TIMEOUT": None,
        "OPTIONS": {"MAX_ENTRIES": 1_000_000, "CULL_FREQUENCY": 10},
    },
    # Provider health, pending batches, batch outcomes and the pipeline's run counter and last
    # run (dispatch/health_store.py, DESIGN.md section 7), in a table nothing else writes:
    # DatabaseCache culls by key order once MAX_ENTRIES is passed, and ":1:dispatch:..."
    # sorts before most keys, so a busy shared cache would drop health state first.
    "dispatch": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "gomail_dispatch_cache",
        "TIMEOUT": None,
        "OPTIONS": {
            # Live keys: two per provider, two of the pipeline's, one outcome per batch in
            # flight (at most one per message: providers.*.max_in_flight <= 100,000 each), and
            # outcomes that came after their batch was given up, until beat's purge deletes
            # them (celeryconfig.DISPATCH_CACHE_PURGE_SECONDS). This is far above all that.
            "MAX_ENTRIES": 1_000_000,
            # Were MAX_ENTRIES ever passed, Django would delete the expired rows, then the
            # lowest 1/CULL_FREQUENCY of the keys (health first). A CULL_FREQUENCY larger than
            # the table can ever grow makes that share zero keys: only expired rows are culled.
            "CULL_FREQUENCY": 2**31 - 1,
        },
    },
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# The browser UI's build (frontend/dist, made by `make run`) is served at the site root.
WHITENOISE_ROOT = BASE_DIR / "frontend" / "dist"
WHITENOISE_INDEX_FILE = True
# Whitenoise would answer every origin "Access-Control-Allow-Origin: *"; CORS is decided by
# api.cors_allowed_origins (below), for the API only.
WHITENOISE_ALLOW_ALL_ORIGINS = False

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Django reads at most this much of a body into memory; the API's own, smaller limit
# answers first with the JSON error shape.
DATA_UPLOAD_MAX_MEMORY_SIZE = GOMAIL.api.max_body_size_bytes + 1

# --- Security: security.* and api.cors_allowed_origins (gomail_site/security.py) ---
# In every mode: cookies out of scripts' and other sites' reach, no sniffing, no framing.
SESSION_COOKIE_HTTPONLY = True
# "Lax" unless the UI is served from another site (security.cookie_samesite).
SESSION_COOKIE_SAMESITE = GOMAIL.security.cookie_samesite
# The UI on the same origin reads the CSRF token from its cookie, so that one cannot be
# HttpOnly; a UI on another origin gets the token from GET /session/csrf.
CSRF_COOKIE_SAMESITE = GOMAIL.security.cookie_samesite
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": security.csp_directives(GOMAIL.security.content_security_policy)
}
# Production runs behind a TLS-terminating proxy (security.production_settings):
# SESSION_COOKIE_SECURE, CSRF_COOKIE_SECURE, SECURE_HSTS_SECONDS (security.hsts_seconds, with
# subdomains), SECURE_SSL_REDIRECT (except /healthz, /readyz, /metrics) and
# SECURE_PROXY_SSL_HEADER = X-Forwarded-Proto: https, which the proxy must set on every request.
if PRODUCTION:
    globals().update(security.production_settings(GOMAIL.security))
# How many reverse proxies in front of gunicorn append to X-Forwarded-For (0: none); the
# sign-in lockout counts failures per client address (gomail_site.lockout.client_address).
GOMAIL_TRUSTED_PROXY_HOPS = security.proxy_hops(os.environ)

# --- Sign-in lockout: django-axes (gomail_site/lockout.py), both doors (admin, POST /session) --
AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out username or address before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# In the database, shared by every API process; operators unlock with manage.py axes_reset*.
AXES_HANDLER = "gomail_site.lockout.LockoutHandler"
# Read per request from security.admin_login_attempts and security.admin_lockout_seconds.
AXES_FAILURE_LIMIT = "gomail_site.lockout.failure_limit"
AXES_COOLOFF_TIME = "gomail_site.lockout.cool_off"
# Each alone locks: a username from every address, an address for every username.
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_CLIENT_IP_CALLABLE = "gomail_site.lockout.client_address"
AXES_LOCKOUT_CALLABLE = "gomail_site.lockout.lockout_response"
# Axes' reset on success would forget the address's failures too, so a guesser with one valid
# account could keep its address under the limit: LockoutHandler forgets the username's only.
AXES_RESET_ON_SUCCESS = False
# A refused sign-in neither counts nor prolongs the lockout: it ends admin_lockout_seconds
# after the failures that reached the limit, whatever is tried meanwhile.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# Kept out of axes' logs and of the attempts' stored form data (the password always is).
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "csrfmiddlewaretoken"]

# Browsers on these other origins may call the API (not the admin) with their cookies; an
# origin not listed gets no Access-Control-Allow-Origin. Empty: same origin only.
CORS_ALLOWED_ORIGINS = security.origins(GOMAIL.api.cors_allowed_origins)
CORS_ALLOW_CREDENTIALS = True
CORS_URLS_REGEX = security.API_URLS_REGEX
# A UI on one of them signs in with POST /session: Django's CSRF check must accept its Origin.
CSRF_TRUSTED_ORIGINS = list(CORS_ALLOWED_ORIGINS)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "emails.authentication.ApiKeyAuthentication",
        "emails.authentication.HeaderCsrfSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["emails.permissions.IsSender"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["emails.parsing.EmailJSONParser"],
    "EXCEPTION_HANDLER": "emails.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    # Per API key and per signed-in user, in the shared DatabaseCache; the rates are
    # api.rate_limit_per_key / api.rate_limit_per_user, read per request (emails/throttling.py).
    "DEFAULT_THROTTLE_CLASSES": [
        "emails.throttling.ApiKeyRateThrottle",
        "emails.throttling.UserRateThrottle",
    ],
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Gomail API",
    "DESCRIPTION": (
        "Accepts emails for delivery through Amazon SES or SendGrid. Every error answers "
        '`{"errors": {"base": "..."}}` or `{"errors": {"<field>": "..."}}`.'
    ),
    "VERSION": "1.0.0",
    # Swagger UI's files are served from this service (no CDN: it must work offline).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
}

LOGGING = logging_config(GOMAIL.logging)
