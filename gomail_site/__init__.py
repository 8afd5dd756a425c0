"""The Django project of Gomail: settings, URLs, the WSGI entry point and the Celery app."""

# Loaded with Django so that tasks sent from the API or the admin use this app's broker.
from gomail_site.celery import app as celery_app

__all__ = ["celery_app"]
