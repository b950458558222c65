"""Continuous analysis (issue 19): runs all through a hold, fails fast, decides at low traffic with a
statistical test, rolls back on alarms, resumes on the same evidence; templates as data, and replay."""

from __future__ import annotations

from datetime import timedelta

from deployments import cloudops, services
from deployments.models import Analysis, AnalysisTemplate, Deployment, Rollback, Strategy
from deployments.rollout import deployment_advance
from deployments.strategies import replay_deployment, template_false_alarms
from deployments.tests.conftest import drive
from deployments.verdicts import Evidence, Rules, judge
from portal.audit.models import AuditEvent
from portal.cloud import aws
from portal.incidents import ingest


def long_hold(template: str = "sandbox-quick", hold: int = 120) -> Strategy:
    return Strategy.objects.create(slug=f"long-{template}", name="Long hold", kind="canary", weights=[5, 100],
                                   hold_seconds=[hold, hold], watch_seconds=30, template=AnalysisTemplate.objects.get(slug=template))


def start(env, responder, strategy: str, version: str = "v2") -> Deployment:
    return services.deployment_create(environment=env, version=version, strategy=strategy, launch_template_version="$Latest",
                                      actor=responder)


# --- the statistics, as a user of the page reads them --------------------------------------------

def test_low_traffic_decides_on_the_evidence_it_has():
    rules = Rules(min_requests=10)
    # 45 clean requests at 5 %: below the critical 5 % at 90 % confidence: passes without a person.
    assert judge(Evidence(45, 0, 855, 4), rules).decision == "pass"
    # Clearly worse than the old colour even though both are small: 4 errors in 20 against 1 in 400.
    worse = judge(Evidence(20, 4, 400, 1), rules, new="green", old="blue")
    assert worse.decision in ("fail", "critical") and "green" in worse.reasons[0]
    # Twelve clean requests cannot yet say the error rate is below 5 %: the one truly undecided case.
    unsure = judge(Evidence(12, 0, 228, 0), rules)
    assert unsure.decision == "inconclusive" and "confidence" in unsure.reasons[0]
    # Two errors in twenty against a clean old colour: not significant at 1 %, not a rollback.
    assert judge(Evidence(20, 2, 400, 0), Rules(min_requests=10, critical_error_min_requests=100)).decision != "critical"


def test_a_template_states_its_false_alarm_rate(strategies, settings):
    settings.DEPLOYMENTS_SIMULATION_TRIALS = 60
    t = template_false_alarms(AnalysisTemplate.objects.get(slug="sandbox-quick"))
    t.refresh_from_db()
    assert t.false_alarm_rate is not None and t.false_alarm_rate <= 0.05
    assert "simulated clean 5 % steps" in t.false_alarm_note


# --- the rollout --------------------------------------------------------------------------------

def test_errors_two_seconds_into_a_two_minute_hold_roll_back_within_one_interval(
        aws_platform, strategies, fake_metrics, fast, clock, responder):
    env = aws_platform
    st = long_hold()
    dep = start(env, responder, st.slug)
    assert drive(dep, clock, until=("holding",)) == "holding"
    for _ in range(2):  # two clean runs, 3 s apart
        clock.now = Deployment.objects.get(pk=dep.pk).wake_at
        assert deployment_advance(deployment_id=dep.pk, now=clock.now) == "holding"
    clock.now += timedelta(seconds=2)
    broke_at = clock.now
    fake_metrics.values["green"]["error_rate"] = 30.0
    state = drive(dep, clock)
    assert state == "rolling_back"
    failed = Analysis.objects.filter(deployment=dep, decision="critical").get()
    assert (failed.at - broke_at).total_seconds() <= st.template.interval_seconds
    rb = Rollback.objects.get(deployment=dep)
    assert rb.automatic and "critical" in rb.reason
    # The runs before it passed while the canary was clean, each with its counts and limits.
    clean = Analysis.objects.filter(deployment=dep, decision="pass")
    assert clean.exists() and all(a.thresholds["critical_error_rate"] == 5 for a in clean)


def test_a_critical_alert_naming_the_new_colour_rolls_back_with_that_cause(
        aws_platform, strategies, fake_metrics, fast, clock, responder):
    env = aws_platform
    dep = start(env, responder, long_hold().slug)
    drive(dep, clock, until=("holding",))
    ingest.alert_ingest_internal(source="alertmanager", fingerprint="green-5xx", name="GreenErrorBudgetBurn", severity="critical",
                                 firing=True, summary="green burns its error budget", labels={"colour": "green"}, environment=env)
    clock.advance(3)
    assert deployment_advance(deployment_id=dep.pk, now=clock.now) == "rolling_back"
    rb = Rollback.objects.get(deployment=dep)
    assert "critical incident on green" in rb.reason and "GreenErrorBudgetBurn" in rb.reason


def test_an_alert_about_the_old_colour_does_not_roll_the_new_one_back(
        aws_platform, strategies, fake_metrics, fast, clock, responder):
    env = aws_platform
    dep = start(env, responder, long_hold().slug)
    drive(dep, clock, until=("holding",))
    ingest.alert_ingest_internal(source="alertmanager", fingerprint="blue-5xx", name="BlueErrors", severity="critical",
                                 firing=True, summary="blue", labels={"colour": "blue"}, environment=env)
    clock.advance(3)
    assert deployment_advance(deployment_id=dep.pk, now=clock.now) == "holding"
    assert not Rollback.objects.exists()


def test_a_cloudwatch_alarm_in_alarm_rolls_back(aws_platform, strategies, fake_metrics, fast, clock, responder):
    env = aws_platform
    dep = start(env, responder, long_hold().slug)
    drive(dep, clock, until=("holding",))
    name = next(a.name for a in aws.list_alarms(env) if a.name.endswith("error-rate-critical"))
    aws.client(env, "cloudwatch").set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="Threshold Crossed: 2 datapoints")
    clock.advance(3)
    assert deployment_advance(deployment_id=dep.pk, now=clock.now) == "rolling_back"
    assert f"CloudWatch alarm {name} is in ALARM" in Rollback.objects.get(deployment=dep).reason


def test_an_undecided_hold_extends_pauses_once_and_resume_keeps_the_evidence(
        aws_platform, strategies, fake_metrics, fast, clock, responder):
    env = aws_platform
    fake_metrics.values["green"]["requests"] = 100.0  # 5 requests at 5 %: never enough
    dep = start(env, responder, "canary-quick")
    assert drive(dep, clock) == "paused"
    dep.refresh_from_db()
    began = dep.hold_started_at
    assert dep.inconclusive_paused and "served 5 requests" in dep.pause_reason
    assert cloudops.read_weights(env) == {"blue": 95, "green": 5}
    fake_metrics.values["green"]["requests"] = 3000.0
    last_before = Analysis.objects.filter(deployment=dep).latest("id").pk
    services.deployment_resume(deployment=dep, actor=responder)
    assert drive(dep, clock) == "completed"
    after = Analysis.objects.filter(deployment=dep, step_index=0, pk__gt=last_before)
    assert after.exists() and all(a.window_started_at == began for a in after)


# --- templates as data, the API and the replay -------------------------------------------------

def test_strategies_api_lists_the_seeded_ones_and_leads_change_templates(client, strategies, make_token):
    api_token = make_token
    read = api_token("read")
    r = client.get("/api/v1/strategies", headers={"Authorization": f"Bearer {read}"})
    assert r.status_code == 200
    by_slug = {s["slug"]: s for s in r.json()}
    assert {"blue-green", "canary", "canary-quick"} <= set(by_slug)
    assert by_slug["canary"]["template"]["slug"] == "seed" and by_slug["canary-quick"]["template"]["interval_seconds"] == 3
    assert "Fisher exact" in by_slug["canary"]["template"]["method"]
    lead = api_token("lead")
    bad = client.post("/api/v1/analysis-templates", {"slug": "strict", "alpha": 0.9}, content_type="application/json",
                      headers={"Authorization": f"Bearer {lead}"})
    assert bad.status_code == 422 and "alpha" in bad.json()["detail"]
    assert not AnalysisTemplate.objects.filter(slug="strict").exists()
    assert client.post("/api/v1/analysis-templates", {"slug": "strict"}, content_type="application/json",
                       headers={"Authorization": f"Bearer {read}"}).status_code == 403
    ok = client.post("/api/v1/analysis-templates", {"slug": "strict", "interval_seconds": 10, "failure_limit": 1,
                                                    "metrics": [{"name": "Job posting", "metric": "job_posting_seconds",
                                                                 "comparison": "absolute", "max": 30}]},
                     content_type="application/json", headers={"Authorization": f"Bearer {lead}"})
    assert ok.status_code == 201 and ok.json()["failure_limit"] == 1
    assert AuditEvent.objects.filter(verb="analysis_template.save").exists()
    st = client.post("/api/v1/strategies", {"slug": "strict-canary", "template": "strict", "kind": "canary",
                                            "weights": [10, 100], "hold_seconds": [60, 60], "watch_seconds": 60},
                     content_type="application/json", headers={"Authorization": f"Bearer {lead}"})
    assert st.status_code == 201 and st.json()["template"]["slug"] == "strict"
    wrong = client.post("/api/v1/strategies", {"slug": "broken", "template": "strict", "weights": [50, 20], "hold_seconds": [1, 1]},
                        content_type="application/json", headers={"Authorization": f"Bearer {lead}"})
    assert wrong.status_code == 422 and "increase" in wrong.json()["detail"]


def test_replay_gives_the_verdicts_the_live_runs_gave(aws_platform, strategies, fake_metrics, fast, clock, responder):
    env = aws_platform
    good = start(env, responder, "canary-quick", version="v2")
    assert drive(good, clock) == "completed"
    good.refresh_from_db()
    same = replay_deployment(good.strategy.template, good)
    assert same.same and same.replay_outcome == "completed"
    runs = [r for h in same.holds for r in h.runs]
    assert runs and all(r.replay == r.live for r in runs)
    # A stricter template would have judged this release differently: its errors (0.5 %) above a 0.1 % bound.
    strict = AnalysisTemplate.objects.create(slug="strict", name="Strict", interval_seconds=3, min_requests=10,
                                             pass_error_rate_pct=0.1, max_extension_seconds=0)
    other = replay_deployment(strict, good)
    assert other.replay_outcome != "completed" and not other.same


def test_freshly_seeded_templates_are_used_by_the_seeded_strategies(strategies):
    assert strategies["canary"].template.slug == "seed" and strategies["canary-quick"].template.slug == "sandbox-quick"
    seed = strategies["canary"].template
    assert seed.interval_seconds == 30 and seed.failure_limit == 2 and seed.metrics[0]["metric"] == "job_posting_seconds"


def test_extra_metrics_fail_a_run_over_their_limit_live_and_in_replay_alike():
    from deployments.verdicts import extra_metric_reasons

    specs = [{"name": "Job posting", "metric": "job_posting_seconds", "comparison": "absolute", "max": 60},
             {"name": "Queue", "promql": "q", "comparison": "baseline", "margin_pct": 20}]
    assert extra_metric_reasons(specs, {"Job posting": {"new": 45.0}, "Queue": {"new": 11.0, "old": 10.0}}) == []
    reasons = extra_metric_reasons(specs, {"Job posting": {"new": 75.0}, "Queue": {"new": 13.0, "old": 10.0},
                                           "Ignored": {"new": 1e9}}, new="green", old="blue")
    assert reasons == ["Job posting 75 is above 60", "Queue 13 on green vs 10 on blue (margin 20 %)"]
    assert extra_metric_reasons(specs, {"Job posting": {"error": "unreadable"}}) == []
