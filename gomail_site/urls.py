from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("emails.urls")),
]

# Clients of a JSON API get JSON for every error, never Django's HTML pages.
handler400 = "emails.errors.json_bad_request"
handler403 = "emails.errors.json_permission_denied"
handler404 = "emails.errors.json_not_found"
handler500 = "emails.errors.json_server_error"
