import importlib.util

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from portal import views
from portal.accounts import views as account_views
from portal.accounts.clientip import metrics_guard
from portal.api import api

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", metrics_guard(views.metrics_view), name="metrics"),  # METRICS_ALLOWED_CIDRS / METRICS_TOKEN
    path("accounts/login/", account_views.PortalLoginView.as_view(), name="login"),
    path("accounts/reauth/", account_views.reauth, name="reauth"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("audit/", include("portal.audit.urls")),
    path("api/v1/", api.urls),
    path("admin/", admin.site.urls),
]

# Page routes of the domain apps; an app without urls.py yet is skipped.
for prefix, module in [
    ("incidents/", "portal.incidents.urls"),
    ("health/", "portal.health.urls"),
    ("checklist/", "portal.checklist.urls"),
    ("phases/", "portal.phases.urls"),
    ("environments/", "portal.cloud.urls"),
    ("runbooks/", "runbooks.urls"),
    ("deployments/", "deployments.urls"),
    ("oncall/", "portal.oncall.urls"),
]:
    if importlib.util.find_spec(module) is not None:
        urlpatterns.append(path(prefix, include(module)))

handler403 = "portal.views.error_403"
handler404 = "portal.views.error_404"
