"""The client builder: credentials modes, config, and AWS errors mapped to CloudError (retries where AWS says so)."""

import pytest
from botocore.retries import bucket, standard
from django.test import override_settings
from werkzeug import Response

from portal.cloud import aws, clients
from portal.cloud.errors import CloudError
from portal.cloud.models import Environment

ASG_NS = "http://autoscaling.amazonaws.com/doc/2011-01-01/"
THROTTLED = (f'<ErrorResponse xmlns="{ASG_NS}"><Error><Type>Sender</Type><Code>Throttling</Code>'
             "<Message>Rate exceeded</Message></Error><RequestId>r-1</RequestId></ErrorResponse>")
DENIED = (f'<ErrorResponse xmlns="{ASG_NS}"><Error><Type>Sender</Type><Code>AccessDenied</Code>'
          "<Message>User: arn:aws:sts::123456789012:assumed-role/ops/portal is not authorized to perform: "
          "autoscaling:DescribeAutoScalingGroups</Message></Error><RequestId>r-2</RequestId></ErrorResponse>")


def _groups_xml(name="ftw-blue", desired=2):
    return (f'<DescribeAutoScalingGroupsResponse xmlns="{ASG_NS}"><DescribeAutoScalingGroupsResult><AutoScalingGroups>'
            f"<member><AutoScalingGroupName>{name}</AutoScalingGroupName><MinSize>0</MinSize><MaxSize>32</MaxSize>"
            f"<DesiredCapacity>{desired}</DesiredCapacity><Instances>"
            "<member><InstanceId>i-1</InstanceId><LifecycleState>InService</LifecycleState><HealthStatus>Healthy</HealthStatus>"
            "<AvailabilityZone>us-east-1a</AvailabilityZone></member></Instances></member>"
            "</AutoScalingGroups></DescribeAutoScalingGroupsResult><ResponseMetadata><RequestId>r-3</RequestId>"
            "</ResponseMetadata></DescribeAutoScalingGroupsResponse>")


@pytest.fixture
def fake_aws_env(db, httpserver):
    clients.reset_cache()
    env = Environment.objects.create(name="fake", credentials_mode="static", endpoint_url=httpserver.url_for("").rstrip("/"),
                                     blue_asg="ftw-blue")
    yield env
    clients.reset_cache()


@pytest.fixture
def no_backoff(monkeypatch):
    delays = []

    def delay_amount(self, context):
        delays.append(context.attempt_number)
        return 0

    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", delay_amount)
    # adaptive mode's client-side rate limiter also waits after throttles; the test checks the retries, not the clock
    monkeypatch.setattr(bucket.TokenBucket, "acquire", lambda self, amount=1, block=True: True)
    return delays


def _asg_calls(httpserver):
    return [r for r, _ in httpserver.log if b"DescribeAutoScalingGroups" in r.get_data()]


def test_throttling_is_retried_with_backoff(fake_aws_env, httpserver, no_backoff):
    answers = iter([Response(THROTTLED, 400, content_type="text/xml"), Response(THROTTLED, 400, content_type="text/xml"),
                    Response(_groups_xml(), 200, content_type="text/xml")])
    httpserver.expect_request("/", method="POST").respond_with_handler(lambda request: next(answers))
    groups = aws.describe_groups(fake_aws_env)
    assert groups["blue"].desired == 2 and groups["blue"].in_service == 1
    assert len(_asg_calls(httpserver)) == 3
    assert no_backoff == [1, 2]  # a backoff before each retry


def test_throttling_that_never_ends_becomes_a_cloud_error(fake_aws_env, httpserver, no_backoff):
    httpserver.expect_request("/", method="POST").respond_with_response(Response(THROTTLED, 400, content_type="text/xml"))
    with pytest.raises(CloudError) as info:
        aws.describe_groups(fake_aws_env)
    assert info.value.code == "Throttling" and info.value.is_throttling
    assert len(_asg_calls(httpserver)) == 5  # adaptive mode, 5 attempts in all
    assert "throttling" in info.value.words


def test_page_reads_try_once_and_the_workers_still_retry(fake_aws_env, httpserver, no_backoff):
    httpserver.expect_request("/", method="POST").respond_with_response(Response(THROTTLED, 400, content_type="text/xml"))
    with clients.page_reads(), pytest.raises(CloudError) as info:
        aws.describe_groups(fake_aws_env)
    assert info.value.code == "Throttling"
    assert len(_asg_calls(httpserver)) == 1 and no_backoff == []  # a page says so at once, no back-off sleeps
    with pytest.raises(CloudError):
        aws.describe_groups(fake_aws_env)  # outside the block: the worker's client, 5 attempts
    assert len(_asg_calls(httpserver)) == 1 + 5


def test_access_denied_is_not_retried_and_names_the_operation(fake_aws_env, httpserver, no_backoff):
    httpserver.expect_request("/", method="POST").respond_with_response(Response(DENIED, 403, content_type="text/xml"))
    with pytest.raises(CloudError) as info:
        aws.describe_groups(fake_aws_env)
    err = info.value
    assert (err.code, err.operation, err.environment) == ("AccessDenied", "DescribeAutoScalingGroups", "fake")
    assert err.is_access_denied and len(_asg_calls(httpserver)) == 1 and no_backoff == []
    assert "DescribeAutoScalingGroups in the fake environment failed: AWS denied access" in err.words
    assert "not authorized" in err.words


def test_requests_carry_the_portal_user_agent(fake_aws_env, httpserver):
    httpserver.expect_request("/", method="POST").respond_with_response(Response(_groups_xml(), 200, content_type="text/xml"))
    aws.describe_groups(fake_aws_env)
    request = _asg_calls(httpserver)[0]
    assert clients.USER_AGENT in request.headers["User-Agent"]


def test_unreachable_endpoint_is_a_cloud_error(db):
    from tests.plugins.aws import free_port

    clients.reset_cache()
    env = Environment.objects.create(name="gone", credentials_mode="static", endpoint_url=f"http://127.0.0.1:{free_port()}",
                                     listener_arn="arn:aws:elasticloadbalancing:us-east-1:1:listener/app/x/1/2")
    with override_settings(AWS_MAX_ATTEMPTS=1), pytest.raises(CloudError) as info:
        aws.get_listener_weights(env)
    assert info.value.code == "EndpointConnectionError" and "could not be reached" in info.value.words
    clients.reset_cache()


def test_client_config():
    cfg = clients.client_config()
    assert cfg.retries["mode"] == "adaptive" and cfg.retries["total_max_attempts"] >= 3
    assert cfg.connect_timeout and cfg.read_timeout
    assert cfg.user_agent_extra == clients.USER_AGENT


def test_assume_role_with_external_id(aws_platform):
    env = aws_platform
    env.credentials_mode = "role"
    env.role_arn = "arn:aws:iam::123456789012:role/ops-portal"
    env.external_id = "ext-123"
    env.save()
    clients.reset_cache()
    who = clients.client(env, "sts").get_caller_identity()
    assert "assumed-role/ops-portal/ops-portal-sandbox" in who["Arn"]
    assert aws.get_listener_weights(env) == {"blue": 100, "green": 0}


def test_credentials_settings_errors(db):
    clients.reset_cache()
    role = Environment(name="r", credentials_mode="role")
    with pytest.raises(CloudError) as info:
        clients.client(role, "sts")
    assert info.value.code == "NotConfigured"
    profile = Environment(name="p", credentials_mode="profile", profile="no-such-profile-xyz")
    with pytest.raises(CloudError) as info:
        clients.client(profile, "sts")
    assert info.value.code == "ProfileNotFound"
