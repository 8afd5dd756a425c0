"""The dispatch app's one table: leases, the lock that keeps two pipeline runs apart."""

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
