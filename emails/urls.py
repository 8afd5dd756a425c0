from django.urls import path

from emails.views import EmailStatusView, SendEmailView

urlpatterns = [
    path("email/send", SendEmailView.as_view(), name="email-send"),
    path("email/<str:message_id>", EmailStatusView.as_view(), name="email-status"),
]
