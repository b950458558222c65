"""Each automated verification against the in-process AWS sandbox (moto), passing and failing."""

import dataclasses
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from portal.audit.models import AuditEvent
from portal.checklist.models import ChecklistItem, ChecklistNotification, ItemStatus
from portal.checklist.selectors import readiness
from portal.checklist.services import item_mark_ready, item_sign_off
from portal.checklist.tasks import checklist_verify
from portal.checklist.verify import run_check


def _client(env, service):
    from portal.cloud.clients import client

    return client(env, service)


@pytest.fixture
def env(aws_platform):
    return aws_platform


def test_all_seven_pass_on_the_sandbox(env, items):
    result = checklist_verify(triggered_by="test")
    assert set(result) - {"expired"} == {"backups", "load-balancer", "auto-scaling", "alert-rules", "ssl", "dns", "cdn",
                                         "security-audit", "dashboards"}
    failing = {slug: ChecklistItem.objects.get(slug=slug).verification_summary for slug, o in result.items() if slug != "expired" and o != "passing"}
    # This platform's edge is AWS only: the plan's rate limits (CloudFlare rules) are the audit's one gap
    # (test_verify_edge has the platform with CloudFlare in front, where all of them pass).
    assert failing.pop("security-audit") == ("Security audit: Rate limiting: The plan's rate limits are CloudFlare rules and "
                                             "this environment's edge is not on CloudFlare (dns_provider and cdn_provider are aws)")
    # No Grafana is configured: the dashboards stay with people and the verification says so.
    assert failing.pop("dashboards").startswith("No Grafana URL is configured")
    assert failing == {}


def test_backups_fail_with_one_day_retention(env, items):
    assert run_check("backups", env).outcome == "passing"
    _client(env, "rds").modify_db_instance(DBInstanceIdentifier=env.rds_instance_id, BackupRetentionPeriod=1, ApplyImmediately=True)
    r = run_check("backups", env)
    assert r.outcome == "failing" and "retention is 1 day" in r.summary
    assert r.evidence["backup_retention_days"] == 1


def test_backups_fail_when_the_latest_snapshot_is_old(env, items, monkeypatch):
    from portal.cloud import aws

    real = aws.describe_rds

    def old_snapshot(e):
        return dataclasses.replace(real(e), latest_snapshot_at=timezone.now() - timedelta(hours=30))

    monkeypatch.setattr(aws, "describe_rds", old_snapshot)
    r = run_check("backups", env)
    assert r.outcome == "failing" and "30.0 h old" in r.summary


def test_load_balancer_fails_when_the_listener_forwards_to_one_colour(env, items):
    assert run_check("load-balancer", env).outcome == "passing"
    _client(env, "elbv2").modify_listener(
        ListenerArn=env.listener_arn, DefaultActions=[{"Type": "forward", "TargetGroupArn": env.blue_target_group_arn}]
    )
    r = run_check("load-balancer", env)
    assert r.outcome == "failing" and "green" in r.summary


def test_auto_scaling_fails_without_policies_or_with_bounds_below_the_phase(env, items, lead):
    assert run_check("auto-scaling", env).outcome == "passing"
    asg = _client(env, "autoscaling")
    for p in asg.describe_policies(AutoScalingGroupName=env.green_asg)["ScalingPolicies"]:
        asg.delete_policy(AutoScalingGroupName=env.green_asg, PolicyName=p["PolicyName"])
    r = run_check("auto-scaling", env)
    assert r.outcome == "failing" and "green has no scaling policy" in r.summary
    asg.update_auto_scaling_group(AutoScalingGroupName=env.blue_asg, MaxSize=3)
    r = run_check("auto-scaling", env)
    assert "blue max size 3 is below the phase's 4" in r.summary


def test_alert_rules_fail_when_a_critical_threshold_has_no_alarm(env, items):
    assert run_check("alert-rules", env).outcome == "passing"
    cw = _client(env, "cloudwatch")
    cpu = [a["AlarmName"] for a in cw.describe_alarms()["MetricAlarms"] if a.get("MetricName") == "CPUUtilization"]
    assert cpu
    cw.delete_alarms(AlarmNames=cpu)
    r = run_check("alert-rules", env)
    assert r.outcome == "failing" and "CPU usage >90%" in r.summary


def test_ssl_fails_without_an_issued_certificate(env, items):
    assert run_check("ssl", env).outcome == "passing"
    acm = _client(env, "acm")
    for c in acm.list_certificates()["CertificateSummaryList"]:
        for lst in _client(env, "elbv2").describe_listeners(LoadBalancerArn=env.load_balancer_arn)["Listeners"]:
            if lst.get("Certificates"):
                _client(env, "elbv2").delete_listener(ListenerArn=lst["ListenerArn"])
        acm.delete_certificate(CertificateArn=c["CertificateArn"])
    r = run_check("ssl", env)
    assert r.outcome == "failing" and "No ACM certificate" in r.summary


def test_ssl_fails_when_the_certificate_expires_within_30_days(env, items, monkeypatch):
    from portal.cloud import aws

    real = aws.acm_certificates

    def expiring(e):
        return [dataclasses.replace(c, not_after=timezone.now() + timedelta(days=10)) for c in real(e)]

    monkeypatch.setattr(aws, "acm_certificates", expiring)
    r = run_check("ssl", env)
    assert r.outcome == "failing" and "expires within 30 days" in r.summary


def test_dns_fails_when_the_record_points_elsewhere(env, items):
    assert run_check("dns", env).outcome == "passing"
    r53 = _client(env, "route53")
    for zone in r53.list_hosted_zones()["HostedZones"]:
        for rr in r53.list_resource_record_sets(HostedZoneId=zone["Id"])["ResourceRecordSets"]:
            if rr.get("AliasTarget"):
                r53.change_resource_record_sets(HostedZoneId=zone["Id"], ChangeBatch={"Changes": [
                    {"Action": "DELETE", "ResourceRecordSet": rr},
                    {"Action": "CREATE", "ResourceRecordSet": {"Name": rr["Name"], "Type": "A", "TTL": 60,
                                                                "ResourceRecords": [{"Value": "192.0.2.10"}]}},
                ]})
    r = run_check("dns", env)
    assert r.outcome == "failing" and "No Route 53 record points at the load balancer" in r.summary


def test_cdn_fails_when_the_distribution_is_gone_or_disabled(env, items):
    assert run_check("cdn", env).outcome == "passing"
    cf = _client(env, "cloudfront")
    for d in cf.list_distributions()["DistributionList"]["Items"]:
        got = cf.get_distribution_config(Id=d["Id"])
        config = got["DistributionConfig"]
        config["Enabled"] = False
        cf.update_distribution(Id=d["Id"], IfMatch=got["ETag"], DistributionConfig=config)
    r = run_check("cdn", env)
    assert r.outcome == "failing" and "disabled" in r.summary


def test_cloud_errors_are_reported_not_passed(env, items):
    env.rds_instance_id = "no-such-db"
    r = run_check("backups", env)
    assert r.outcome == "error" and "Could not check" in r.summary


def test_a_signed_off_item_that_regresses_is_flagged_and_leads_told(env, items, responder, lead, lead2, django_capture_on_commit_callbacks):
    lead.email, lead2.email = "lena@example.org", "leo@example.org"
    lead.save(update_fields=["email"])
    lead2.save(update_fields=["email"])
    backups = items["backups"]
    checklist_verify(slug="backups", triggered_by="test")
    item_mark_ready(item=backups, actor=responder)
    item_sign_off(item=backups, actor=lead)
    item_sign_off(item=backups, actor=lead2)
    backups.refresh_from_db()
    assert backups.status == ItemStatus.SIGNED_OFF and backups.complete
    assert readiness().complete == 1

    _client(env, "rds").modify_db_instance(DBInstanceIdentifier=env.rds_instance_id, BackupRetentionPeriod=1, ApplyImmediately=True)
    with django_capture_on_commit_callbacks(execute=True):
        checklist_verify(slug="backups", triggered_by="test")
    backups.refresh_from_db()
    assert backups.evidence_stale and not backups.complete
    assert readiness().complete == 0 and readiness().stale == 1
    note = ChecklistNotification.objects.get(item=backups)
    assert note.delivered and note.recipients == ["lena@example.org", "leo@example.org"]
    assert len(mail.outbox) == 1 and "no longer backed by evidence" in mail.outbox[0].subject
    assert AuditEvent.objects.filter(verb="checklist.evidence_stale").count() == 1
    assert AuditEvent.objects.filter(verb="checklist.notify_leads").count() == 1

    # the next scheduled run finds the same failure: no second notice
    with django_capture_on_commit_callbacks(execute=True):
        checklist_verify(slug="backups", triggered_by="test")
    assert ChecklistNotification.objects.count() == 1 and len(mail.outbox) == 1

    # fixed in the cloud: the flag clears on the next run
    _client(env, "rds").modify_db_instance(DBInstanceIdentifier=env.rds_instance_id, BackupRetentionPeriod=7, ApplyImmediately=True)
    checklist_verify(slug="backups", triggered_by="test")
    backups.refresh_from_db()
    assert not backups.evidence_stale and backups.complete
