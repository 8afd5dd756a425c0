"""The public API: ``POST /email/send`` and ``GET /email/<id>`` (DESIGN.md section 4)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from emails import idempotency
from emails.accepting import MessageTooLarge, NotAccepted, accept
from emails.errors import ApiError, ServiceUnavailable, error_body
from emails.models import ApiKey, Email
from emails.openapi import ERRORS, FORBIDDEN, NOT_FOUND, UNAUTHENTICATED, error
from emails.parsing import COULD_NOT_DECODE, AnyContentTypeNegotiation
from emails.senders import NOT_ALLOWED, allowed_senders_for
from emails.serializers import EmailStatusSerializer, RecentEmailSerializer, SendEmailSerializer
from emails.throttling import SEND_SCOPE
from emails.wire import has_disallowed_characters

DISALLOWED_CHARACTERS = "Body contains characters outside the allowed set"
TOO_MANY_REQUESTS = error(
    "Over the caller's rate limit (api.rate_limit_per_key or api.rate_limit_per_user); "
    "`Retry-After` gives the seconds to wait.",
    {"base": "Too many requests: retry in 42 seconds"},
)


def _email_object(data: Any) -> dict[str, Any]:
    # A top level that is not {"email": {...}} is a wrong shape, reported like bad JSON.
    if type(data) is not dict or type(data.get("email")) is not dict:
        raise ApiError(COULD_NOT_DECODE)
    email = data["email"]
    if any(has_disallowed_characters(text) for text in _strings(email)):
        raise ApiError(DISALLOWED_CHARACTERS)
    return email


def _strings(value: Any) -> Iterator[str]:
    # Every string of the email, keys too (its depth is bounded by api.max_json_depth).
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _sender(request: Request) -> tuple[ApiKey | None, Any]:
    api_key = request.auth if isinstance(request.auth, ApiKey) else None
    user = request.user if getattr(request.user, "pk", None) is not None else None
    return api_key, user


class SendEmailView(APIView):
    """Validate an email, queue it on SQS, record it; answer its id only once SQS has it."""

    content_negotiation_class = AnyContentTypeNegotiation
    # Its own rate-limit budget, apart from the read endpoints' (emails/throttling.py).
    throttle_scope = SEND_SCOPE

    @extend_schema(
        operation_id="sendEmail",
        summary="Accept an email for delivery",
        request=inline_serializer("SendEmailRequest", {"email": SendEmailSerializer()}),
        examples=[
            OpenApiExample(
                "Original format",
                description="The original service's fields: one recipient, a text body.",
                value={
                    "email": {
                        "fromEmail": "hello@example.com",
                        "fromName": "Hello",
                        "toEmail": "someone@example.org",
                        "toName": "Someone",
                        "subject": "Hi",
                        "body": "Sent through Gomail",
                    }
                },
                request_only=True,
            ),
            OpenApiExample(
                "Real email",
                description="Recipients lists, text and HTML, reply-to, an allowed custom "
                "header, tags, metadata and a small attachment (base64).",
                value={
                    "email": {
                        "fromEmail": "hello@example.com",
                        "fromName": "Hello",
                        "to": [
                            {"email": "ada@example.org", "name": "Ada Lovelace"},
                            {"email": "alan@example.org"},
                        ],
                        "cc": [{"email": "grace@example.org", "name": "Grace Hopper"}],
                        "bcc": [{"email": "audit@example.com"}],
                        "subject": "Your report",
                        "body": "Your report is ready.",
                        "html": "<p>Your report is <b>ready</b>.</p>",
                        "replyTo": "support@example.com",
                        "headers": {"List-Unsubscribe": "<https://example.com/unsubscribe/42>"},
                        "tags": ["report", "monthly"],
                        "metadata": {"customerId": "c-1234", "plan": "pro"},
                        "attachments": [
                            {
                                "filename": "hello.txt",
                                "contentType": "text/plain",
                                "content": "SGVsbG8h",
                            }
                        ],
                    }
                },
                request_only=True,
            ),
        ],
        parameters=[
            OpenApiParameter(
                idempotency.HEADER,
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="Makes a retry safe (IETF draft-ietf-httpapi-idempotency-key-header): "
                "1 to 255 printable ASCII characters, quoted or not. The same key with the same "
                "request answers the first request's `messageId` and queues nothing again; with "
                "another request it is a 422. Remembered per caller for "
                "`api.idempotency_retention_hours`.",
            )
        ],
        responses={
            200: OpenApiResponse(
                inline_serializer("Accepted", {"messageId": serializers.UUIDField()}),
                description="The email is durably queued in SQS.",
            ),
            400: error(
                "Malformed JSON or a wrong shape; a body over the size limit; characters SQS "
                "refuses; an invalid `Idempotency-Key`.",
                {"base": COULD_NOT_DECODE},
            ),
            401: UNAUTHENTICATED,
            403: FORBIDDEN,
            409: error(
                "Another request with this `Idempotency-Key` is still being accepted: retry "
                "later with the same key.",
                {"base": idempotency.IN_PROGRESS},
            ),
            422: OpenApiResponse(
                ERRORS,
                description="Every invalid field at once, keyed by its camelCase name and, "
                "inside a list or an object, by its place (`to[1].email`, `headers.X-Mailer`, "
                "`attachments[0].filename`); a `fromEmail` that is not one of the caller's "
                "allowed senders is one of them. The checks across fields (an address given "
                "twice, refused at its second place; too many recipients) are made once every "
                "field is valid. Or an `Idempotency-Key` this caller sent with another request.",
                examples=[
                    OpenApiExample(
                        "invalid fields",
                        value={
                            "errors": {
                                "fromEmail": NOT_ALLOWED,
                                "to[1].email": "To email is not a valid email",
                                "attachments[0].filename": "Files ending in .exe are not allowed",
                            }
                        },
                    ),
                    OpenApiExample(
                        "missing fields",
                        description="The original format's answer, unchanged.",
                        value={
                            "errors": {
                                "toEmail": "To email is required",
                                "body": "Body is required",
                            }
                        },
                    ),
                    OpenApiExample(
                        "an address given twice",
                        value={
                            "errors": {
                                "bcc[0].email": "ada@example.org is already a recipient "
                                "(to[0].email)"
                            }
                        },
                    ),
                    OpenApiExample(
                        "Idempotency-Key reused",
                        value={"errors": {"base": idempotency.DIFFERENT_REQUEST}},
                    ),
                ],
            ),
            429: TOO_MANY_REQUESTS,
            503: error(
                "SQS (or the database) failed; nothing was accepted.",
                {"base": "Service unavailable"},
            ),
        },
    )
    def post(self, request: Request) -> Response:
        data = _email_object(request.data)
        api_key, user = _sender(request)
        serializer = SendEmailSerializer(
            data=data, context={"allowed_senders": allowed_senders_for(api_key, user)}
        )
        key = idempotency.parse_key(request.headers.get(idempotency.HEADER))
        serializer.is_valid(raise_exception=True)
        # Only a valid request reserves its key; a failure to accept it releases the key.
        with idempotency.reserved(key, idempotency.owner_of(api_key, user), request.data) as held:
            if not held.replayed:
                email = serializer.wire_email(held.email_id, timezone.now())
                try:
                    accept(email, api_key=api_key, user=user, confirm=held.confirm)
                except MessageTooLarge:
                    raise ApiError("Body is too large to queue") from None
                except NotAccepted:
                    raise ServiceUnavailable() from None
        return Response({"messageId": held.email_id})


class EmailStatusView(APIView):
    """The delivery status of one email, to the API key (or user) that sent it."""

    @extend_schema(
        operation_id="getEmailStatus",
        summary="The delivery status of an email",
        responses={
            200: EmailStatusSerializer,
            401: UNAUTHENTICATED,
            404: NOT_FOUND,
            429: TOO_MANY_REQUESTS,
        },
    )
    def get(self, request: Request, message_id: str) -> Response:
        email = visible_emails(request).filter(id=_uuid_or_none(message_id)).first()
        if email is None:
            return Response(error_body({"base": "Not found"}), status=404)
        return Response(
            EmailStatusSerializer(email, context={"show_bcc": _is_sender(request, email)}).data
        )


class RecentEmailsView(APIView):
    """The caller's most recent emails, newest first, optionally of one status."""

    @extend_schema(
        operation_id="listRecentEmails",
        summary="The caller's recent emails",
        parameters=[
            OpenApiParameter("status", str, enum=Email.Status.values, required=False),
            OpenApiParameter("limit", int, required=False, description="1 to 200, default 50"),
        ],
        responses={
            200: RecentEmailSerializer(many=True),
            400: error("An unknown status or a bad limit.", {"base": "Unknown status"}),
            401: UNAUTHENTICATED,
            429: TOO_MANY_REQUESTS,
        },
    )
    def get(self, request: Request) -> Response:
        emails = visible_emails(request)
        status = request.query_params.get("status")
        if status:
            if status not in Email.Status.values:
                raise ApiError("Unknown status")
            emails = emails.filter(status=status)
        try:
            limit = int(request.query_params.get("limit", DEFAULT_RECENT))
        except ValueError:
            raise ApiError("Limit must be a number") from None
        if not 1 <= limit <= MAX_RECENT:
            raise ApiError(f"Limit must be between 1 and {MAX_RECENT}")
        return Response(
            RecentEmailSerializer(
                emails.order_by("-accepted_at")[:limit],
                many=True,
                # Only the caller's own emails are listed, unless no one is signed in.
                context={"show_bcc": any(_sender(request))},
            ).data
        )


DEFAULT_RECENT = 50
MAX_RECENT = 200


def visible_emails(request: Request) -> QuerySet[Email]:
    """The emails ``request``'s caller may see: its API key's, or its signed-in user's."""
    api_key, user = _sender(request)
    # A withdrawn email was answered 503: for its caller it was never accepted.
    emails = Email.objects.exclude(status=Email.Status.WITHDRAWN)
    if api_key is not None:
        return emails.filter(api_key=api_key)
    if user is not None:
        return emails.filter(user=user)
    if request.user is None or not request.user.is_authenticated:
        # Only reachable with require_auth off: a trusted network sees every record.
        return emails
    return Email.objects.none()


def _is_sender(request: Request, email: Email) -> bool:
    api_key, user = _sender(request)
    return (api_key is not None and email.api_key_id == api_key.pk) or (
        user is not None and email.user_id == user.pk
    )


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


class EmailLimitsView(APIView):
    """What ``POST /email/send`` accepts (``api.*`` in the configuration), so that a client
    (the browser UI) can refuse an attachment or too many recipients before uploading."""

    @extend_schema(
        operation_id="getEmailLimits",
        summary="The limits of an email",
        responses={
            200: inline_serializer(
                "EmailLimits",
                {
                    "maxRecipients": serializers.IntegerField(help_text="to, cc and bcc together"),
                    "maxAttachments": serializers.IntegerField(),
                    "maxAttachmentBytes": serializers.IntegerField(
                        help_text="one attachment, decoded"
                    ),
                    "maxAttachmentsBytes": serializers.IntegerField(
                        help_text="all attachments together, decoded"
                    ),
                    "deniedContentTypes": serializers.ListField(child=serializers.CharField()),
                    "deniedExtensions": serializers.ListField(
                        child=serializers.CharField(), help_text='without the dot: "exe"'
                    ),
                    "maxTags": serializers.IntegerField(),
                    "maxTagLength": serializers.IntegerField(),
                },
            ),
            401: UNAUTHENTICATED,
            429: TOO_MANY_REQUESTS,
        },
    )
    def get(self, request: Request) -> Response:
        from django.conf import settings

        api = settings.GOMAIL.api
        return Response(
            {
                "maxRecipients": api.max_recipients,
                "maxAttachments": api.max_attachments,
                "maxAttachmentBytes": api.max_attachment_bytes,
                "maxAttachmentsBytes": api.max_attachments_bytes,
                "deniedContentTypes": list(api.denied_content_types),
                "deniedExtensions": list(api.denied_extensions),
                "maxTags": api.max_tags,
                "maxTagLength": api.max_tag_length,
            }
        )
