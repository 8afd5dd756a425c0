"""The API's one error shape: ``{"errors": {"base": "..."}}`` or ``{"errors": {"field": "..."}}``.

Every failure an API client can see goes through here: DRF's exceptions, our own, unknown
URLs and server errors, so that no client ever gets HTML or a stack trace.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

logger = logging.getLogger(__name__)

UNPROCESSABLE = status.HTTP_422_UNPROCESSABLE_ENTITY


class ApiError(exceptions.APIException):
    """A failure reported to the client as ``{"errors": {"base": message}}``."""

    def __init__(self, message: str, status_code: int = status.HTTP_400_BAD_REQUEST) -> None:
        super().__init__(detail=message)
        self.status_code = status_code


class ServiceUnavailable(ApiError):
    def __init__(self) -> None:
        super().__init__("Service unavailable", status.HTTP_503_SERVICE_UNAVAILABLE)


def error_body(errors: dict[str, str]) -> dict[str, dict[str, str]]:
    return {"errors": errors}


def first_message(detail: Any) -> str:
    """One sentence of a DRF error detail (DRF nests lists and dicts)."""
    while isinstance(detail, list | tuple) and detail:
        detail = detail[0]
    if isinstance(detail, dict):
        return first_message(next(iter(detail.values()), ""))
    return str(detail)


def field_errors(detail: dict[str, Any]) -> dict[str, str]:
    """A validation error's fields, one sentence each, nested places flattened into keys:
    ``{"to": {"[2].email": ...}}`` is ``to[2].email`` and ``{"headers": {"X-A": ...}}``
    is ``headers.X-A``."""
    flat: dict[str, str] = {}
    for key, value in detail.items():
        if isinstance(value, dict) and value:
            for sub, message in value.items():
                place = f"{key}{sub}" if sub.startswith("[") else f"{key}.{sub}"
                flat[place] = first_message(message)
        else:
            flat[key] = first_message(value)
    return flat


_BASE_MESSAGES = {
    exceptions.NotAuthenticated: "Authentication required",
    exceptions.MethodNotAllowed: "Method not allowed",
    exceptions.NotFound: "Not found",
}


def too_many_requests(wait: float | None) -> str:
    """The message of a 429 (a rate limit, see ``emails.throttling``); ``Retry-After`` says
    the same in its header."""
    if wait is None:
        return "Too many requests"
    # Always "seconds", as the contract and the sign-in lockout's message say it.
    return f"Too many requests: retry in {math.ceil(wait)} seconds"


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's exception handler, reshaped into the API's error shape."""
    # Imported here: rest_framework.views loads the parser classes, which import this module.
    from rest_framework.views import exception_handler

    response = exception_handler(exc, context)
    if response is None and isinstance(exc, OperationalError | InterfaceError):
        # The database (or the cache in it) cannot be reached: the service is unavailable, as
        # when SQS is, and the client should retry. Other database errors (an integrity error,
        # a missing table) are bugs that a retry does not cure: they stay 500s, logged in full.
        logger.warning(
            "database unavailable in %s: %s", context.get("view").__class__.__name__, exc
        )
        return api_exception_handler(ServiceUnavailable(), context)
    if response is None:
        # Not an API exception: log it for us, tell the client nothing about it.
        logger.exception("unhandled error in %s", context.get("view").__class__.__name__)
        return Response(
            error_body({"base": "Internal server error"}),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    if isinstance(exc, exceptions.ValidationError):
        response.status_code = UNPROCESSABLE
        detail = exc.detail if isinstance(exc.detail, dict) else {"base": exc.detail}
        response.data = error_body(field_errors(detail))
        return response
    if isinstance(exc, exceptions.Throttled):
        message = too_many_requests(exc.wait)
    else:
        message = next(
            (text for kind, text in _BASE_MESSAGES.items() if isinstance(exc, kind)),
            first_message(getattr(exc, "detail", str(exc))),
        )
    response.data = error_body({"base": message})
    return response


def json_not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body({"base": "Not found"}), status=404)


def json_server_error(request: HttpRequest) -> JsonResponse:
    return JsonResponse(error_body({"base": "Internal server error"}), status=500)


def json_bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body({"base": "Bad request"}), status=400)


def json_permission_denied(
    request: HttpRequest, exception: Exception | None = None
) -> JsonResponse:
    return JsonResponse(error_body({"base": "Permission denied"}), status=403)
