"""Leads manage analysis templates and strategies in the admin too: audited, validated, and the stated
false-alarm rate follows a change."""

from __future__ import annotations

from deployments.models import AnalysisTemplate, Strategy
from portal.audit.models import AuditEvent


def test_admin_edits_a_template_audited_and_refuses_bad_strategy_steps(client, django_user_model, strategies):
    client.force_login(django_user_model.objects.create_superuser("root-deploy", "root@example.com", "root-password-1"))
    t = AnalysisTemplate.objects.get(slug="seed")
    page = client.get(f"/admin/deployments/analysistemplate/{t.pk}/change/")
    assert page.status_code == 200 and b"failure_limit" in page.content
    form = {k: getattr(t, k) for k in ("slug", "name", "description", "interval_seconds", "min_requests", "alpha",
                                       "pass_confidence", "error_margin_pct", "latency_margin_pct", "max_extension_seconds")}
    form.update(failure_limit=3, metrics="[]", rollback_alarms='["*error-rate-critical"]', pass_error_rate_pct="")
    r = client.post(f"/admin/deployments/analysistemplate/{t.pk}/change/", form)
    assert r.status_code == 302, r.content[:2000]
    t.refresh_from_db()
    assert t.failure_limit == 3 and t.rollback_alarms == ["*error-rate-critical"]
    ev = AuditEvent.objects.get(verb="admin.deployments.analysistemplate.change")
    assert ev.after["failure_limit"] == 3 and ev.before["failure_limit"] == 2
    st = Strategy.objects.get(slug="canary")
    bad = client.post(f"/admin/deployments/strategy/{st.pk}/change/", {
        "slug": st.slug, "name": st.name, "kind": st.kind, "description": "", "weights": "[50, 20]",
        "hold_seconds": "[1, 1]", "watch_seconds": 10, "prepare_timeout_seconds": 600, "template": t.pk})
    assert bad.status_code == 200 and b"weights must increase" in bad.content
    st.refresh_from_db()
    assert st.weights == [5, 25, 50, 100]
