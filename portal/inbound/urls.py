from django.urls import path

from portal.inbound import views

app_name = "inbound"
urlpatterns = [
    # email links (portal/inbound/email_links.py)
    path("email/<str:token>/", views.email_action, name="email_action"),
]
