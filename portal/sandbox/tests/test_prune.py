import datetime as dt

import boto3
from moto import mock_aws

from portal.sandbox.runner import prune_metrics


@mock_aws
def test_prune_drops_old_points_whatever_their_timestamp_kind():
    cw = boto3.client("cloudwatch", region_name="us-east-1")
    now = dt.datetime.now(dt.UTC)
    cw.put_metric_data(Namespace="T", MetricData=[
        {"MetricName": "m", "Value": 1, "Timestamp": now - dt.timedelta(hours=3)},
        {"MetricName": "m", "Value": 2, "Timestamp": (now - dt.timedelta(minutes=1)).replace(tzinfo=None)},
        {"MetricName": "m", "Value": 3},
    ])
    dropped = prune_metrics(now - dt.timedelta(hours=1))
    assert dropped == 1
    assert prune_metrics((now - dt.timedelta(hours=1)).replace(tzinfo=None)) == 0
