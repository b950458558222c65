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
