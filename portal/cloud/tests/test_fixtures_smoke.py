from portal.cloud import aws


def test_aws_platform_builds_the_plan(aws_platform):
    env = aws_platform
    groups = aws.describe_groups(env)
    assert groups["blue"].desired == 2 and groups["green"].desired == 0
    assert aws.get_listener_weights(env) == {"blue": 100, "green": 0}


def test_sandbox_server_reachable(sandbox_env):
    assert sandbox_env.endpoint_url.startswith("http://127.0.0.1:")
    assert aws.get_listener_weights(sandbox_env) == {"blue": 100, "green": 0}
    assert aws.describe_groups(sandbox_env)["blue"].in_service == 2
