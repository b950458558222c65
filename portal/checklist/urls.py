from django.urls import path

from portal.checklist import views

app_name = "checklist"
urlpatterns = [
    path("", views.board, name="board"),
    path("summary/", views.summary, name="summary"),
    path("panel/", views.panel, name="panel"),
    path("verify/", views.verify_all, name="verify_all"),
    path("<slug:slug>/", views.item_detail, name="item"),
    path("<slug:slug>/sign-off/", views.sign_off, name="sign_off"),
    path("<slug:slug>/revoke/", views.revoke, name="revoke"),
    path("<slug:slug>/ready/", views.mark_ready, name="mark_ready"),
    path("<slug:slug>/evidence/", views.add_evidence, name="add_evidence"),
    path("<slug:slug>/evidence/<uuid:public_id>/", views.evidence_file, name="evidence_file"),
    path("<slug:slug>/load-test/", views.load_test, name="load_test"),
    path("<slug:slug>/verify/", views.verify_now, name="verify"),
    path("<slug:slug>/configure/", views.configure, name="configure"),
]
