from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from gomail_site.metrics import metrics_view
from gomail_site.probes import healthz, readyz
from gomail_site.session import CsrfTokenView, SessionView
from gomail_site.ui import ui_not_built

urlpatterns = [
    path("", ui_not_built, name="ui"),
    # Failed sign-ins at its login page count with POST /session's, per username and per
    # address: django-axes in authenticate() and its middleware (gomail_site/lockout.py).
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("api/schema", SpectacularAPIView.as_view(), name="openapi-schema"),
    # The split view serves Swagger UI's start-up script as a file: no inline script, so the
    # Content-Security-Policy needs no 'unsafe-inline' for scripts.
    path(
        "api/docs", SpectacularSwaggerSplitView.as_view(url_name="openapi-schema"), name="api-docs"
    ),
    path("session", SessionView.as_view(), name="session"),
    path("session/csrf", CsrfTokenView.as_view(), name="session-csrf"),
    path("", include("emails.urls")),
    path("", include("dispatch.urls")),
]

# Clients of a JSON API get JSON for every error, never Django's HTML pages.
handler400 = "emails.errors.json_bad_request"
handler403 = "emails.errors.json_permission_denied"
handler404 = "emails.errors.json_not_found"
handler500 = "emails.errors.json_server_error"
