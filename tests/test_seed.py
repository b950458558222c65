from django.core.management import call_command

from portal.plan.loader import load_plan
from portal.plan.models import PlanFact


def _snapshot():
    return sorted((f.section, f.key, str(f.data), f.seeded_hash) for f in PlanFact.objects.all())


def test_seed_defaults_twice_changes_nothing(db):
    call_command("seed_defaults")
    first = _snapshot()
    call_command("seed_defaults")
    assert _snapshot() == first
    assert len(first) > 50


def test_edited_rows_are_kept_unless_reset(db):
    call_command("seed_defaults")
    fact = PlanFact.objects.get(section="costs", key="items")
    fact.data = [{"slug": "compute", "service": "Compute", "monthly": 2500}]
    fact.save()
    call_command("seed_defaults")
    fact.refresh_from_db()
    assert fact.data[0]["monthly"] == 2500
    call_command("seed_defaults", "--reset")
    fact.refresh_from_db()
    assert fact.data[0]["monthly"] == 2000


def test_plan_carries_every_section_of_the_seed():
    plan = load_plan()
    assert [c["title"] for c in plan["checklist"]] == [
        "AWS/CloudFlare accounts set up", "Domain registered and DNS configured", "SSL certificates installed",
        "Load balancer configured", "Auto-scaling policies defined", "Database backups automated", "CDN configured",
        "Monitoring dashboards created", "Alert rules configured", "Security audit completed",
        "Load testing performed", "Disaster recovery plan tested",
    ]
    phases = {p["name"]: p for p in plan["phases"]}
    assert (phases["Foundation"]["users_max"], phases["Foundation"]["instances_min"], phases["Foundation"]["instances_max"], phases["Foundation"]["monthly_cost"]) == (5000, 2, 4, 750)
    assert (phases["Growth"]["users_min"], phases["Growth"]["instances_max"], phases["Growth"]["monthly_cost"]) == (5000, 8, 2100)
    assert (phases["Scale"]["users_max"], phases["Scale"]["instances_min"], phases["Scale"]["monthly_cost"]) == (100000, 8, 4750)
    assert (phases["Optimize"]["users_max"], phases["Optimize"]["instances_max"], phases["Optimize"]["monthly_cost"]) == (300000, 32, 7000)
    crit = {t["metric"]: t["value"] for t in plan["thresholds"]["critical"]}
    assert crit == {"error_rate": 5, "p95_response_time": 2, "cpu": 90, "db_connections": 95}
    warn = {t["metric"]: t["value"] for t in plan["thresholds"]["warning"]}
    assert warn == {"error_rate": 2, "p95_response_time": 1, "cpu": 80, "cache_hit_ratio": 70, "disk": 80}
    targets = {t["slug"]: t["value"] for t in plan["performance_targets"]}
    assert targets == {"page-load-p95": 1.0, "api-p50": 0.1, "api-p95": 0.5, "job-posting": 60, "uptime": 99.9, "error-rate": 1.0}
    costs = {c["service"]: c["monthly"] for c in plan["costs"]["items"]}
    assert sum(costs.values()) == plan["costs"]["total"] == 9675
    assert plan["costs"]["optimized_total"] == 7000
    storage = {s["slug"]: s["bytes"] for s in plan["storage_estimates"]}
    assert storage["photos"] == 2_460_000_000_000 and storage["total"] == 6_200_000_000_000
    expected = {m["slug"]: m["value"] for m in plan["expected_metrics"]}
    assert expected == {"daily-active-users": 120000, "peak-concurrent": 15000, "jobs-per-day": 1000,
                        "bids-per-day": 5000, "photos-per-day": 3000, "api-rps": 200}
    assert [r["title"] for r in plan["runbooks"]] == ["High Error Rate", "Slow Performance", "Database Issues"]
    assert plan["runbooks"][2]["steps"][-1] == "Failover to replica if needed"
    assert {s["name"] for s in plan["services"]} == {"OpenAI API", "Twilio", "SendGrid", "Stripe", "Trueway API"}
    canary = next(s for s in plan["deployment_strategies"] if s["slug"] == "canary")
    assert canary["weights"] == [5, 25, 50, 100] and canary["hold_seconds"][0] == 600
    assert plan["components"]["compute"]["instance_type"] == "t3.large"
    assert plan["components"]["database"] == {"service": "AWS RDS PostgreSQL", "instance_class": "db.r5.large", "multi_az": True, "storage_gb": 500, "storage_type": "SSD"}
    assert plan["security"]["backups"]["retention_days"] == 7
