"""Django settings for Gomail.

Everything that is not a secret comes from the validated YAML configuration
(``gomail_site.config``); secrets come from the environment only.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

from gomail_site.config import get_config
from gomail_site.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent
GOMAIL = get_config()

DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
# The development key only ever signs local sessions; production sets DJANGO_SECRET_KEY.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-gomail-local-development-only")
# The local SendGrid stand-in accepts this key; production sets the real one.
SENDGRID_API_KEY = os.environ.get("SENDGRID_API_KEY", "SG.local-stand-in-key")
ALLOWED_HOSTS = [
    host.strip()
    for host in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")
    if host.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "emails",
    "dispatch",
]

MIDDLEWARE = [
    "gomail_site.metrics.ApiLatencyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "gomail_site.urls"
WSGI_APPLICATION = "gomail_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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
        # Provider health lives here (DESIGN.md section 7); MAX_ENTRIES is sized so that
        # culling never drops a pending batch outcome.
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "gomail_cache",
        "TIMEOUT": None,
        "OPTIONS": {"MAX_ENTRIES": 1_000_000, "CULL_FREQUENCY": 10},
    }
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

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Django reads at most this much of a body into memory; the API's own, smaller limit
# answers first with the JSON error shape.
DATA_UPLOAD_MAX_MEMORY_SIZE = GOMAIL.api.max_body_size_bytes + 1

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "emails.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["emails.permissions.IsSender"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["emails.parsing.EmailJSONParser"],
    "EXCEPTION_HANDLER": "emails.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
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
