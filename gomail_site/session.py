"""``/session``: the browser UI signs in and out with a Django account (session + CSRF)."""

from __future__ import annotations

from django.contrib.auth import authenticate, login, logout
from django.middleware.csrf import get_token
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import ensure_csrf_cookie
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from emails.authentication import HeaderCsrfSessionAuthentication
from emails.errors import ApiError, error_body
from emails.openapi import FORBIDDEN, UNAUTHENTICATED, error
from emails.parsing import COULD_NOT_DECODE
from gomail_site.lockout import too_many_message

CSRF_TOKEN = inline_serializer("CsrfToken", {"csrfToken": serializers.CharField()})
USER = inline_serializer(
    "SessionUser", {"username": serializers.CharField(), "isStaff": serializers.BooleanField()}
)


class Credentials(serializers.Serializer):
    username = serializers.CharField(
        max_length=150,
        error_messages={"required": "Username is required", "blank": "Username is required"},
    )
    password = serializers.CharField(
        max_length=4096,
        trim_whitespace=False,
        error_messages={"required": "Password is required", "blank": "Password is required"},
    )


def _user(user: object) -> dict:
    return {"username": user.get_username(), "isStaff": bool(user.is_staff)}


@method_decorator(ensure_csrf_cookie, name="get")
class SessionView(APIView):
    """GET: who is signed in (and the CSRF cookie); POST: sign in; DELETE: sign out."""

    authentication_classes = [HeaderCsrfSessionAuthentication]
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="getSession",
        summary="The signed-in user; sets the CSRF cookie",
        responses={200: USER, 401: UNAUTHENTICATED},
    )
    def get(self, request: Request) -> Response:
        if request.user is None or not request.user.is_authenticated:
            return Response(error_body({"base": "Not signed in"}), status=401)
        return Response(_user(request.user))

    @extend_schema(
        operation_id="signIn",
        summary="Sign in with a Django account",
        request=Credentials,
        responses={
            200: USER,
            400: error(
                "Malformed JSON, or a body over the size limit.", {"base": COULD_NOT_DECODE}
            ),
            401: error("Wrong username or password.", {"base": "Wrong username or password"}),
            403: FORBIDDEN,
            422: error("A missing field.", {"username": "Username is required"}),
            429: error(
                "Too many failed sign-ins for this username or from this address within "
                "`security.admin_lockout_seconds`; the Retry-After header says when to retry.",
                {"base": too_many_message(900)},
            ),
        },
    )
    def post(self, request: Request) -> Response:
        # Signing in changes who the browser is: protect it from cross-site forgery too.
        HeaderCsrfSessionAuthentication().enforce_csrf(request)
        credentials = Credentials(data=request.data if isinstance(request.data, dict) else {})
        credentials.is_valid(raise_exception=True)
        # Failed sign-ins count with the admin's, per username and per address (django-axes,
        # gomail_site/lockout.py): authenticate() refuses a locked-out username or address
        # without checking the password, and records each failure. When it refused, or this
        # failure reached the limit, AxesMiddleware answers the 429 documented above instead
        # of this 401 (gomail_site.lockout.lockout_response).
        user = authenticate(request._request, **credentials.validated_data)
        if user is None:
            raise ApiError("Wrong username or password", status.HTTP_401_UNAUTHORIZED)
        login(request._request, user)
        return Response(_user(user))

    @extend_schema(
        operation_id="signOut", summary="Sign out", responses={204: None, 403: FORBIDDEN}
    )
    def delete(self, request: Request) -> Response:
        if request.user is not None and request.user.is_authenticated:
            HeaderCsrfSessionAuthentication().enforce_csrf(request)
        logout(request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class CsrfTokenView(APIView):
    """GET: the CSRF token for ``X-CSRFToken`` (and its cookie).

    A UI served from another origin cannot read the API's ``csrftoken`` cookie; CORS lets only
    the configured origins read this answer, so no other site learns the token.
    """

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="getCsrfToken",
        summary="The CSRF token for the X-CSRFToken header; sets the CSRF cookie",
        responses={200: CSRF_TOKEN},
    )
    def get(self, request: Request) -> Response:
        # get_token() also marks the cookie to be (re)sent with this response.
        response = Response({"csrfToken": get_token(request._request)})
        # A token is per browser: no shared cache may keep this answer.
        response["Cache-Control"] = "no-store"
        return response
