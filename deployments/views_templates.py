"""The analysis templates page: each template's method, stated false-alarm rate, the strategies that use
it, and "what would this template have decided" over the last deployments (a replay of their runs)."""

from __future__ import annotations

from django.shortcuts import render
from django.views.decorators.http import require_GET

from deployments import strategies
from deployments.models import AnalysisTemplate
from portal.accounts.permissions import perm_required
from portal.accounts.roles import VIEW


@perm_required(VIEW)
@require_GET
def templates(request):
    rows = list(AnalysisTemplate.objects.prefetch_related("strategies").order_by("slug"))
    chosen = next((t for t in rows if t.slug == request.GET.get("template")), None)
    try:
        last = max(1, min(int(request.GET.get("last") or 10), 50))
    except ValueError:
        last = 10
    replays = strategies.replay(chosen, last=last) if chosen else []
    return render(request, "deployments/templates.html", {
        "templates": [{"t": t, "method": strategies.method_text(t), "strategies": list(t.strategies.all())} for t in rows],
        "chosen": chosen, "replays": replays, "last": last,
        "agree": sum(1 for r in replays if r.same),
    })
