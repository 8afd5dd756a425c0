"""``GET /providers``: each provider's health, read-only, for signed-in users (the UI's panel)."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from dispatch.controls import drained_providers
from dispatch.health_store import provider_health
from emails.openapi import UNAUTHENTICATED

PROVIDERS = inline_serializer(
    "ProviderHealth",
    many=True,
    fields={
        "name": serializers.CharField(),
        "enabled": serializers.BooleanField(),
        "drained": serializers.BooleanField(),
        "healthy": serializers.BooleanField(),
        "probing": serializers.BooleanField(help_text="unhealthy: gets one probe per run"),
        "since": serializers.DateTimeField(allow_null=True, help_text="last transition"),
        "consecutiveFailures": serializers.IntegerField(),
        "consecutivePasses": serializers.IntegerField(),
        "inFlight": serializers.IntegerField(),
        "lastError": serializers.CharField(),
    },
)


class ProvidersView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="listProviders",
        summary="Each provider's health",
        responses={200: PROVIDERS, 401: UNAUTHENTICATED},
    )
    def get(self, request: Request) -> Response:
        gomail = settings.GOMAIL
        providers = [(name, cfg.enabled) for name, cfg in gomail.providers.items()]
        drained = drained_providers(name for name, _ in providers)
        answer = []
        for health in provider_health(providers):
            state = health.state
            answer.append(
                {
                    "name": health.name,
                    "enabled": health.enabled,
                    "drained": health.name in drained,
                    "healthy": state.healthy,
                    "probing": health.enabled and not state.healthy and health.name not in drained,
                    "since": state.changed_at.isoformat() if state.changed_at else None,
                    "consecutiveFailures": state.consecutive_failures,
                    "consecutivePasses": state.consecutive_passes,
                    "inFlight": health.in_flight,
                    "lastError": state.last_error,
                }
            )
        return Response(answer)
