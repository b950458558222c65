from django.urls import path

from portal.oncall import views

app_name = "oncall"
urlpatterns = [
    path("", views.index, name="index"),
    path("panel/", views.panel, name="panel"),
    path("take/", views.take, name="take"),
    path("overrides/<uuid:public_id>/delete/", views.override_delete, name="override_delete"),
    path("me/", views.me, name="me"),
    path("me/contact-methods/", views.contact_add, name="contact_add"),
    path("me/contact-methods/<uuid:public_id>/verify/", views.contact_verify, name="contact_verify"),
    path("me/contact-methods/<uuid:public_id>/resend/", views.contact_resend, name="contact_resend"),
    path("me/contact-methods/<uuid:public_id>/delete/", views.contact_delete, name="contact_delete"),
    path("me/contact-methods/<uuid:public_id>/test/", views.test_page, name="test_page"),
    path("me/rules/", views.rule_add, name="rule_add"),
    path("me/rules/<uuid:public_id>/delete/", views.rule_delete, name="rule_delete"),
    path("me/feed/reset/", views.me_feed_reset, name="me_feed_reset"),
    path("me.ics", views.personal_feed, name="personal_feed"),  # before <slug>.ics ("me" is no schedule's slug)
    path("<slug:slug>.ics", views.schedule_feed, name="schedule_feed"),
    path("<slug:slug>/feed/reset/", views.schedule_feed_reset, name="schedule_feed_reset"),
]
