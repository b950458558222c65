
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from portal import views
from portal.accounts import views as account_views
from portal.accounts.clientip import metrics_guard
from portal.api import api
from portal.cloud import urls as cloud_urls
from portal.command import urls as command_urls

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

# Page routes of the domain apps, each added explicitly.
urlpatterns += [
    path("incidents/", include("portal.incidents.urls")),
    path("health/", include("portal.health.urls")),
    path("checklist/", include("portal.checklist.urls")),
    path("phases/", include("portal.phases.urls")),
    path("runbooks/", include("runbooks.urls")),
    path("deployments/", include("deployments.urls")),
    path("oncall/handoff/", include("portal.handoff.urls")),  # the handoff note /oncall/ loads
    path("oncall/", include("portal.oncall.urls")),
    path("webhooks/", include("portal.webhooks.urls")),
    path("inbound/", include("portal.inbound.urls")),
    path("heartbeats/", include("portal.heartbeats.urls")),
    path("command/", include("portal.command.urls")),
    path("status/", include((command_urls.status_patterns, "status"))),
]

# The environments' pages; with the sandbox installed, its drills page joins them (same paths and names).
environment_patterns = list(cloud_urls.urlpatterns)
if settings.SANDBOX_ENABLED:
    from portal.sandbox.urls import (  # the sandbox app exists only when it is installed
        drill_patterns,
        sandbox_patterns,
    )

    environment_patterns = drill_patterns + environment_patterns  # before <slug:name>/
    urlpatterns.append(path("sandbox/", include((sandbox_patterns, "sandbox"))))
urlpatterns.append(path("environments/", include((environment_patterns, cloud_urls.app_name))))

handler403 = "portal.views.error_403"
handler404 = "portal.views.error_404"
