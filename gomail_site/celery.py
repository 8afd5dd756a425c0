"""The Celery app of every Gomail worker and of beat, configured from ``celeryconfig``."""

import json
import os

from celery import Celery
from kombu.serialization import register

from gomail_site.broker import TRANSPORT

# Celery's json escapes every non-ASCII character (up to 12 bytes for 4); email bodies stay
# UTF-8 with this one, so a task of a batch keeps within SQS's 256 KiB.
register(
    "gomail-json",
    lambda value: json.dumps(value, ensure_ascii=False, separators=(",", ":")),
    json.loads,
    content_type="application/x-gomail-json",
    content_encoding="utf-8",
)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gomail_site.settings")

app = Celery("gomail")
app.config_from_object("celeryconfig")
# kombu's SQS transport with a fix that keeps a worker consuming after SQS failed a receive.
app.conf.broker_transport = TRANSPORT
app.autodiscover_tasks()
