from django.urls import path

from emails.views import EmailLimitsView, EmailStatusView, RecentEmailsView, SendEmailView

urlpatterns = [
    path("email/send", SendEmailView.as_view(), name="email-send"),
    path("email/recent", RecentEmailsView.as_view(), name="email-recent"),
    # Before email/<message_id>, which would otherwise take "limits" for an id.
    path("email/limits", EmailLimitsView.as_view(), name="email-limits"),
    path("email/<str:message_id>", EmailStatusView.as_view(), name="email-status"),
]
