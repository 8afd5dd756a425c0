"""The Celery app of every Gomail worker and of beat, configured from ``celeryconfig``."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gomail_site.settings")

app = Celery("gomail")
app.config_from_object("celeryconfig")
app.autodiscover_tasks()
