"""Plan drift against the sandbox platform (moto in process): the built platform matches the plan; a
change made with boto3 shows as a drifted line with both values, on the page and in the API."""

from portal.cloud.clients import client
from portal.cloud.drift import DRIFTED, OK, drift_for_item, environment_drift


def _lines(env):
    return {(x.component, x.check): x for x in environment_drift(env)}


def test_the_built_platform_matches_the_plan(aws_platform):
    lines = _lines(aws_platform)
    drifted = {k: (x.expected, x.actual) for k, x in lines.items() if x.status == DRIFTED}
    assert drifted == {}
    assert lines[("database", "instance class")].status == OK
    assert lines[("database", "instance class")].actual == "db.r5.large"
    assert lines[("load balancer", "TLS policy")].actual.startswith("ELBSecurityPolicy-TLS13-")
    assert {("storage", f"{c} bucket") for c in ("photos", "videos", "documents")} <= set(lines)


def test_an_rds_class_changed_with_boto3_shows_in_drift_with_both_values(aws_platform):
    client(aws_platform, "rds").modify_db_instance(DBInstanceIdentifier=aws_platform.rds_instance_id,
                                                   DBInstanceClass="db.t3.medium", ApplyImmediately=True)
    line = _lines(aws_platform)[("database", "instance class")]
    assert (line.status, line.expected, line.actual, line.checklist_item) == (DRIFTED, "db.r5.large", "db.t3.medium", "load-testing")
    assert [x.check for x in drift_for_item(environment_drift(aws_platform), "load-testing") if x.status == DRIFTED] == ["instance class"]


def test_group_bounds_below_the_phase_and_a_tls12_listener_drift(aws_platform):
    client(aws_platform, "autoscaling").update_auto_scaling_group(AutoScalingGroupName=aws_platform.green_asg, MaxSize=1)
    client(aws_platform, "elbv2").modify_listener(ListenerArn=aws_platform.listener_arn, SslPolicy="ELBSecurityPolicy-TLS-1-2-2017-01")
    lines = _lines(aws_platform)
    bounds = lines[("compute", "green group bounds")]
    assert bounds.status == DRIFTED and bounds.actual == "min 0, max 1"
    tls = lines[("load balancer", "TLS policy")]
    assert (tls.status, tls.actual, tls.checklist_item) == (DRIFTED, "ELBSecurityPolicy-TLS-1-2-2017-01", "ssl")


def test_the_page_and_the_api_show_the_drift(aws_platform, client, viewer, api_client, make_token):
    from portal.cloud.clients import client as aws_client

    aws_client(aws_platform, "rds").modify_db_instance(DBInstanceIdentifier=aws_platform.rds_instance_id,
                                                       DBInstanceClass="db.t3.medium", ApplyImmediately=True)
    client.force_login(viewer)
    body = client.get(f"/environments/{aws_platform.name}/drift/").content.decode()
    assert "db.t3.medium" in body and "db.r5.large" in body and 'data-status="drifted"' in body
    resp = api_client.get(f"/api/v1/environments/{aws_platform.name}/drift", token=make_token("read"))
    assert resp.status_code == 200
    row = next(x for x in resp.json()["lines"] if x["check"] == "instance class")
    assert (row["status"], row["expected"], row["actual"]) == ("drifted", "db.r5.large", "db.t3.medium")
    assert resp.json()["summary"]["drifted"] == 1


def test_the_checklist_item_page_loads_the_drift_that_affects_it(aws_platform, client, viewer, settings):
    from portal.checklist.seed import seed_items
    from portal.cloud.clients import client as aws_client
    from portal.plan.loader import SeedStats, load_plan

    seed_items(load_plan(), reset=False, stats=SeedStats())

    settings.DEFAULT_ENVIRONMENT = aws_platform.name
    aws_client(aws_platform, "elbv2").modify_listener(ListenerArn=aws_platform.listener_arn,
                                                      SslPolicy="ELBSecurityPolicy-TLS-1-2-2017-01")
    client.force_login(viewer)
    page = client.get("/checklist/ssl/").content.decode()
    assert 'hx-get="/environments/drift-for/ssl/"' in page
    part = client.get("/environments/drift-for/ssl/").content.decode()
    assert "TLS policy: the plan says ELBSecurityPolicy-TLS13-*, the account has ELBSecurityPolicy-TLS-1-2-2017-01" in part
    assert "item-drift" not in client.get("/environments/drift-for/dashboards/").content.decode()
