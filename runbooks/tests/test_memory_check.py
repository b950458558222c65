"""The runbooks' CPU and memory check reads the CloudWatch agent's mem_used_percent (CWAgent namespace)."""

import datetime as dt

from django.utils import timezone

from portal.cloud.clients import client
from runbooks.checks import run_check


def test_the_memory_check_reads_the_cloudwatch_agents_gauge(aws_platform):
    env = aws_platform
    client(env, "cloudwatch").put_metric_data(Namespace="CWAgent", MetricData=[
        {"MetricName": "mem_used_percent", "Dimensions": [{"Name": "AutoScalingGroupName", "Value": env.asg_name("blue")}],
         "Value": 71.5, "Timestamp": timezone.now() - dt.timedelta(minutes=1)},
    ])
    reading = run_check("cpu_memory_per_colour", environment=env, params={})
    assert reading["data"]["per_colour"]["blue"]["memory"] == 71.5
    assert reading["data"]["per_colour"]["green"]["memory"] is None
    assert "blue: CPU" in reading["words"] and "memory 71.5" in reading["words"]
    assert "green: CPU" in reading["words"] and "memory not collected" in reading["words"]
