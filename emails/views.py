"""The public API: ``POST /email/send`` and ``GET /email/<id>`` (DESIGN.md section 4)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.db import DatabaseError, transaction
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from emails.errors import ApiError, ServiceUnavailable, error_body
from emails.models import ApiKey, Email
from emails.parsing import COULD_NOT_DECODE, AnyContentTypeNegotiation
from emails.queueing import MessageTooLarge, QueueUnavailable, choose_queue, enqueue
from emails.serializers import EmailStatusSerializer, SendEmailSerializer
from emails.wire import WIRE_FIELDS, WireEmail, has_disallowed_characters

logger = logging.getLogger(__name__)

DISALLOWED_CHARACTERS = "Body contains characters outside the allowed set"


def _email_object(data: Any) -> dict[str, Any]:
    # A top level that is not {"email": {...}} is a wrong shape, reported like bad JSON.
    if type(data) is not dict or type(data.get("email")) is not dict:
        raise ApiError(COULD_NOT_DECODE)
    email = data["email"]
    for key in WIRE_FIELDS:
        value = email.get(key)
        if isinstance(value, str) and has_disallowed_characters(value):
            raise ApiError(DISALLOWED_CHARACTERS)
    return email


def _sender(request: Request) -> tuple[ApiKey | None, Any]:
    api_key = request.auth if isinstance(request.auth, ApiKey) else None
    user = request.user if getattr(request.user, "pk", None) is not None else None
    return api_key, user


class SendEmailView(APIView):
    """Validate an email, queue it on SQS, record it; answer its id only once SQS has it."""

    content_negotiation_class = AnyContentTypeNegotiation

    def post(self, request: Request) -> Response:
        serializer = SendEmailSerializer(data=_email_object(request.data))
        serializer.is_valid(raise_exception=True)
        fields = serializer.validated_data
        email = WireEmail(
            id=str(uuid.uuid4()),
            accepted_at=timezone.now(),
            **{attribute: fields.get(key, "") for key, attribute in WIRE_FIELDS.items()},
        )
        api_key, user = _sender(request)
        queue_name = choose_queue()
        try:
            # The record commits only if SQS took the message: a failure leaves neither.
            with transaction.atomic():
                Email.objects.create(
                    id=email.id,
                    from_email=email.from_email,
                    from_name=email.from_name,
                    to_email=email.to_email,
                    to_name=email.to_name,
                    subject=email.subject,
                    queue=queue_name,
                    api_key=api_key,
                    user=user,
                    accepted_at=email.accepted_at,
                )
                enqueue(email, queue_name)
        except MessageTooLarge:
            raise ApiError("Body is too large to queue") from None
        except QueueUnavailable:
            raise ServiceUnavailable() from None
        except DatabaseError:
            # Either nothing was queued (rolled back before SendMessage) or the commit failed
            # after it: the pipeline then delivers the message and recreates its record.
            logger.exception("could not record email %s", email.id)
            raise ServiceUnavailable() from None
        logger.info("accepted email %s on %s", email.id, queue_name)
        return Response({"messageId": email.id})


class EmailStatusView(APIView):
    """The delivery status of one email, to the API key (or user) that sent it."""

    def get(self, request: Request, message_id: str) -> Response:
        email = self._visible_emails(request).filter(id=_uuid_or_none(message_id)).first()
        if email is None:
            return Response(error_body({"base": "Not found"}), status=404)
        return Response(EmailStatusSerializer(email).data)

    @staticmethod
    def _visible_emails(request: Request) -> Any:
        api_key, user = _sender(request)
        if api_key is not None:
            return Email.objects.filter(api_key=api_key)
        if user is not None:
            return Email.objects.filter(user=user)
        if request.user is None or not request.user.is_authenticated:
            # Only reachable with require_auth off: a trusted network sees every record.
            return Email.objects.all()
        return Email.objects.none()


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
