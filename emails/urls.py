from django.urls import path

from emails.views import EmailStatusView, RecentEmailsView, SendEmailView

urlpatterns = [
    path("email/send", SendEmailView.as_view(), name="email-send"),
    path("email/recent", RecentEmailsView.as_view(), name="email-recent"),
    path("email/<str:message_id>", EmailStatusView.as_view(), name="email-status"),
]
