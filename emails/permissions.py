from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.permissions import BasePermission
from rest_framework.request import Request


class IsSender(BasePermission):
    """An API key or a signed-in user, unless ``api.require_auth`` is off (trusted network)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not settings.GOMAIL.api.require_auth:
            return True
        return bool(request.user and request.user.is_authenticated)
