from django.urls import path

from dispatch.views import ProvidersView

urlpatterns = [path("providers", ProvidersView.as_view(), name="providers")]
