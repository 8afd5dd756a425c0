from django.urls import path, re_path

from emails.views import EmailStatusView, SendEmailView

urlpatterns = [
    re_path(r"^email/send/?$", SendEmailView.as_view(), name="email-send"),
    path("email/<str:message_id>", EmailStatusView.as_view(), name="email-status"),
]
