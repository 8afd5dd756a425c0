"""The dispatch app's tables: leases (the lock that keeps two pipeline runs apart), the
operators' provider switches, and the providers' send-rate windows."""

from __future__ import annotations

from django.db import models


class Lease(models.Model):
    """A named lock held by ``holder`` until ``expires_at``.

    Taken with one conditional UPDATE (see ``dispatch.lease``), which both SQLite and
    PostgreSQL execute atomically: unlike a cache ``add()``, it cannot have two winners.
    The expiry frees a lock whose holder crashed.
    """

    name = models.CharField(max_length=64, primary_key=True)
    holder = models.CharField(max_length=64, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} held by {self.holder or 'nobody'}"


class SendRateWindow(models.Model):
    """A provider's current send-rate window: ``count`` sends granted in window ``window``.

    Shared by every worker process, and taken with one conditional UPDATE per send (see
    ``dispatch.send_rate``), so the provider's ``max_send_rate_per_second`` holds across them.
    """

    provider = models.CharField(max_length=32, primary_key=True)
    # The window's index: its start, in seconds since the epoch, divided by its length.
    window = models.BigIntegerField(default=0)
    count = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.provider}: {self.count} sends in window {self.window}"


class ProviderControl(models.Model):
    """An operator's switches for one provider; its health itself lives in the cache.

    ``drained``: the pipeline sends it nothing, not even probes, until resumed.
    ``reset_requested_at``: the operator asked for its health to start afresh; the pipeline
    (the only writer of health state) applies it on its next run and clears the request.
    """

    name = models.CharField(max_length=32, primary_key=True)
    drained = models.BooleanField(default=False)
    changed_by = models.CharField(max_length=150, blank=True)
    changed_at = models.DateTimeField(null=True, blank=True)
    reset_requested_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "provider"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class DeadLetter(models.Model):
    """No table: the admin's entry for the dead-letter queue, which lives in SQS."""

    class Meta:
        managed = False
        verbose_name = "dead-letter message"
        default_permissions = ("view", "change", "delete")

    def __str__(self) -> str:
        return "dead-letter message"
