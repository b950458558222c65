from django.core.paginator import Paginator
from django.shortcuts import render

from portal.accounts.permissions import perm_required
from portal.accounts.roles import VIEW_AUDIT
from portal.audit.selectors import audit_events

FILTERS = ("verb", "actor", "target_type", "target_id", "result")


@perm_required(VIEW_AUDIT)
def audit_list(request):
    filters = {k: request.GET.get(k, "").strip()[:100] for k in FILTERS}
    page = Paginator(audit_events(**filters), 50).get_page(request.GET.get("page"))
    return render(request, "audit/list.html", {"page": page, "filters": filters})
