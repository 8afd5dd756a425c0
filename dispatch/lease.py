"""A lock that really excludes: a database row taken by one conditional UPDATE.

DESIGN.md section 7: a DatabaseCache ``add()`` can have several winners once its row has
expired, so the pipeline's runs are serialised by this instead. The UPDATE matches only a
free or expired lease; PostgreSQL re-checks that condition on the committed row when two
updates race (so the second finds it taken) and SQLite runs writers one at a time.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from dispatch.models import Lease


def acquire(name: str, holder: str, seconds: float) -> bool:
    """Take lease ``name`` for ``holder`` for ``seconds``; True when it is now held by it."""
    now = timezone.now()
    _ensure_row(name)
    taken = (
        Lease.objects.filter(name=name)
        .filter(Q(holder="") | Q(expires_at__lt=now) | Q(holder=holder))
        .update(holder=holder, expires_at=now + timedelta(seconds=seconds))
    )
    return taken == 1


def release(name: str, holder: str) -> None:
    """Give lease ``name`` back, if ``holder`` still holds it (an expired one may be another's)."""
    Lease.objects.filter(name=name, holder=holder).update(holder="", expires_at=None)


@contextmanager
def held(name: str, seconds: float) -> Iterator[bool]:
    """``with held("pipeline", 60) as mine:`` runs the block with ``mine`` True only for one
    caller at a time; the lease is released on the way out."""
    holder = uuid.uuid4().hex
    mine = acquire(name, holder, seconds)
    try:
        yield mine
    finally:
        if mine:
            release(name, holder)


def _ensure_row(name: str) -> None:
    if Lease.objects.filter(name=name).exists():
        return
    try:
        with transaction.atomic():
            Lease.objects.create(name=name)
    except IntegrityError:
        pass  # another process created it first: the same row serves both
