"""Liveness and readiness probes for load balancers and orchestrators.

``/healthz``: the process answers. ``/readyz``: it can do its job: the configuration loaded,
the database answers, and SQS answers with the incoming queues in place. Both are open (no
authentication) and say nothing secret.
"""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from gomail_site.aws import aws_client, queue_url


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return f"unavailable: {type(exc).__name__}"
    return "ok"


def _sqs() -> str:
    try:
        for name in settings.GOMAIL.sqs.incoming_queues:
            aws_client("sqs", attempts=1).get_queue_attributes(
                QueueUrl=queue_url(name), AttributeNames=["QueueArn"]
            )
    except (BotoCoreError, ClientError) as exc:
        return f"unavailable: {type(exc).__name__}"
    return "ok"


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    # The configuration was validated when settings loaded: reaching this line means it did.
    checks = {"config": "ok", "database": _database(), "sqs": _sqs()}
    ready = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status=200 if ready else 503,
    )
