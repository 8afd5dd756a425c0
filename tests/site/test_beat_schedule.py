"""Beat's schedule (celeryconfig.py): the pipeline's task expiry tolerates clock skew, and the
dispatch cache purge and the email records cleanup run by themselves."""

from __future__ import annotations

from celery.schedules import crontab

import celeryconfig
from gomail_site.celery import app


def entries_for(task: str) -> list[dict]:
    return [entry for entry in celeryconfig.beat_schedule.values() if entry["task"] == task]


def test_the_pipeline_task_outlives_any_clock_skew_between_beat_and_the_worker():
    # The worker checks `expires` against its own clock: an expiry of one interval (2 s) made
    # a worker a few seconds off drop every run. The lease keeps runs from overlapping.
    [pipeline] = entries_for("dispatch.tasks.run_pipeline")
    expires = pipeline["options"]["expires"]

    assert expires >= 300
    assert expires >= celeryconfig._config.pipeline.lease_seconds


def test_pipeline_task_expiry_is_the_largest_of_the_floor_the_lease_and_two_intervals():
    expiry = celeryconfig.pipeline_task_expiry

    assert expiry(interval_seconds=2, lease_seconds=120) == 300
    assert expiry(interval_seconds=2, lease_seconds=900) == 900
    # A long interval: the run is never dropped before the next one is due.
    assert expiry(interval_seconds=600, lease_seconds=120) == 1200


def test_beat_purges_the_dispatch_cache_and_cleans_up_email_records():
    [purge] = entries_for("dispatch.tasks.purge_dispatch_cache")
    [cleanup] = entries_for("dispatch.tasks.cleanup_emails")

    assert purge["schedule"] <= 3600
    assert isinstance(cleanup["schedule"], crontab)
    # Once a day.
    assert len(cleanup["schedule"].hour) == 1 and len(cleanup["schedule"].minute) == 1
    app.loader.import_default_modules()  # the tasks beat names exist
    assert {"dispatch.tasks.purge_dispatch_cache", "dispatch.tasks.cleanup_emails"} <= set(
        app.tasks
    )


def test_beat_cleans_up_the_payloads_bucket_every_hour():
    [cleanup] = entries_for("dispatch.tasks.cleanup_payloads")

    assert isinstance(cleanup["schedule"], crontab)
    assert len(cleanup["schedule"].minute) == 1 and len(cleanup["schedule"].hour) == 24
    app.loader.import_default_modules()
    assert "dispatch.tasks.cleanup_payloads" in app.tasks
