from portal.health.models import Check


def test_grid_pages_with_failing_checks_first(client, viewer):
    for i in range(130):
        Check.objects.create(slug=f"c-{i:03d}", name=f"Check {i:03d}", kind="http", group="external",
                             config={"url": "http://127.0.0.1:1/"}, status="failing" if i == 129 else "ok")
    client.force_login(viewer)
    first = client.get("/health/").content.decode()
    assert first.count('data-check="') == 100
    assert 'data-check="c-129"' in first  # the failing one leads page 1 though it sorts last by name
    assert "of 130" in first
    second = client.get("/health/?page=2").content.decode()
    assert second.count('data-check="') == 30
    assert 'data-check="c-129"' not in second


def test_dashboard_panel_lists_ten_services_failing_first(client, viewer):
    for i in range(15):
        Check.objects.create(slug=f"svc-{i:02d}", name=f"Service {i:02d}", kind="http", group="external",
                             config={"url": "http://127.0.0.1:1/"}, status="failing" if i == 14 else "ok")
    client.force_login(viewer)
    body = client.get("/health/panel/", headers={"HX-Request": "true"}).content.decode()
    services = body.split("External services")[1]
    assert services.count('href="/health/checks/svc-') == 10
    assert "Service 14" in services  # the failing one is listed although it sorts last by name
    assert "Service 13" not in services
    assert "5 more on the health page" in services


def test_grid_sparkline_shows_the_last_thirty_runs_oldest_first(client, viewer):
    from datetime import timedelta

    from django.utils import timezone

    from portal.health.models import CheckResult
    from portal.health.selectors import recent_results

    now = timezone.now()
    check = Check.objects.create(slug="api", name="API", kind="http", group="external", status="ok",
                                 config={"url": "http://127.0.0.1:1/"}, last_result_at=now)
    other = Check.objects.create(slug="cdn", name="CDN", kind="http", group="external", status="ok",
                                 config={"url": "http://127.0.0.1:1/"})
    # 40 runs a minute apart: the oldest ten fall outside the sparkline, the 35th newest failed (hidden)
    # and so did the 3rd newest (shown); a run from yesterday is outside the 24 h window.
    for k in range(40):
        at = now - timedelta(minutes=k)
        CheckResult.objects.create(check_obj=check, ok=k not in (2, 34), latency_ms=100 + k, started_at=at, created_at=at)
    old = now - timedelta(hours=25)
    CheckResult.objects.create(check_obj=other, ok=False, latency_ms=5, started_at=old, created_at=old)

    recent = recent_results([check.pk, other.pk])
    assert [r["latency_ms"] for r in recent[check.pk]] == [100 + k for k in range(29, -1, -1)]
    assert [r["ok"] for r in recent[check.pk]].count(False) == 1
    assert recent[other.pk] == []

    client.force_login(viewer)
    body = client.get("/health/").content.decode()
    api_row = body.split('data-check="api"')[1].split("</tr>")[0]
    assert 'aria-label="latency of the recent runs, 1 failed"' in api_row
    assert api_row.count('<circle class="fail"') == 1
    cdn_row = body.split('data-check="cdn"')[1].split("</tr>")[0]
    assert '<line class="empty"' in cdn_row


def test_grid_escapes_what_checks_report(client, viewer):
    from django.utils import timezone

    Check.objects.create(slug="odd", name="<b>Odd</b> & co", kind="http", group="external", status="failing",
                         config={"url": "http://127.0.0.1:1/"}, last_result_at=timezone.now(),
                         last_reason='<script>alert("x")</script> returned 500')
    client.force_login(viewer)
    body = client.get("/health/").content.decode()
    assert "&lt;b&gt;Odd&lt;/b&gt; &amp; co" in body
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; returned 500" in body
    assert "<script>alert" not in body and "<b>Odd" not in body
    assert 'data-status="failing"' in body
