from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from portal import metrics, ops
from portal.accounts.permissions import perm_required
from portal.accounts.roles import VIEW


@perm_required(VIEW)
def dashboard(request):
    panels = []
    for name in settings.DASHBOARD_PANELS:
        try:
            panels.append({"name": name.replace(":", "-"), "url": reverse(name)})
        except NoReverseMatch:
            continue
    return render(request, "dashboard.html", {"panels": panels})


@require_GET
@never_cache
def healthz(request):
    return JsonResponse({"status": "ok"})


@require_GET
@never_cache
def readyz(request):
    problems = {}
    db = ops.check_database()
    if db:
        problems["database"] = db
    broker = ops.check_broker()
    if broker:
        problems["broker"] = broker
    body = {
        "status": "unavailable" if problems else "ready",
        "database": "down" if db else "ok",
        "broker": "down" if broker else "ok",
        "problems": problems,
    }
    return JsonResponse(body, status=503 if problems else 200)


@require_GET
@never_cache
def metrics_view(request):
    return HttpResponse(metrics.render(), content_type="text/plain; version=0.0.4; charset=utf-8")


def error_403(request, exception=None):
    return render(request, "403.html", {"message": "Your role does not allow this."}, status=403)


def error_404(request, exception=None):
    return render(request, "404.html", status=404)
