"""Metric sources: CloudWatch against moto (with the sandbox's percentile support) and Prometheus against a local server."""

import datetime as dt
import json
import math
from urllib.parse import parse_qs

import pytest
from werkzeug import Response

from portal.cloud import aws
from portal.cloud.errors import CloudError
from portal.cloud.metrics import CloudWatchSource, PrometheusSource, metrics_source
from portal.cloud.models import Environment

NOW = dt.datetime(2026, 11, 27, 12, 0, 30, tzinfo=dt.UTC)


def _put(env, namespace, name, dims, value=None, values=None, at=NOW):
    datum = {"MetricName": name, "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()], "Timestamp": at}
    if values is not None:
        datum["Values"] = values
    else:
        datum["Value"] = value
    aws.client(env, "cloudwatch").put_metric_data(Namespace=namespace, MetricData=[datum])


def _tg(env, colour):
    return {"TargetGroup": env.tg_dimension(colour), "LoadBalancer": env.alb_dimension}


def test_cloudwatch_error_rate_latency_requests(aws_platform):
    env = aws_platform
    elb = "AWS/ApplicationELB"
    _put(env, elb, "RequestCount", _tg(env, "green"), 200)
    _put(env, elb, "RequestCount", _tg(env, "green"), 200, at=NOW - dt.timedelta(minutes=2))
    _put(env, elb, "HTTPCode_Target_5XX_Count", _tg(env, "green"), 20)
    _put(env, elb, "RequestCount", _tg(env, "blue"), 1000)
    _put(env, elb, "RequestCount", {"LoadBalancer": env.alb_dimension}, 1400)
    _put(env, elb, "HTTPCode_Target_5XX_Count", {"LoadBalancer": env.alb_dimension}, 20)
    samples = [0.01 * i for i in range(1, 101)]  # 0.01 .. 1.00 s
    _put(env, elb, "TargetResponseTime", _tg(env, "green"), values=samples)
    _put(env, elb, "RequestCount", _tg(env, "green"), 999, at=NOW - dt.timedelta(minutes=30))  # outside the window
    src = CloudWatchSource(env, clock=lambda: NOW)
    assert src.error_rate("green", 5) == pytest.approx(5.0)  # 20 of 400
    assert src.error_rate("blue", 5) == 0.0  # traffic, no 5XX datapoint
    assert src.error_rate(None, 5) == pytest.approx(100 * 20 / 1400, abs=1e-3)
    assert src.request_count("green", 5) == 400
    assert src.request_count("green", 1) == 200
    assert src.p95_latency("green", 5) == pytest.approx(0.95)  # CloudWatch's nearest-rank p95
    assert src.p95_latency("blue", 5) is None
    assert src.value("p50_response_time", "green", 5) == pytest.approx(0.50)  # extended statistic p50
    assert src.value("p50_response_time", "blue", 5) is None
    assert src.value("requests_per_second", "green", 5) == pytest.approx(400 / 300, abs=1e-3)


def test_cloudwatch_error_rate_counts_the_load_balancers_own_5xx(aws_platform):
    env = aws_platform
    elb = "AWS/ApplicationELB"
    lb = {"LoadBalancer": env.alb_dimension}
    _put(env, elb, "RequestCount", lb, 990)
    _put(env, elb, "HTTPCode_Target_5XX_Count", lb, 10)
    _put(env, elb, "HTTPCode_ELB_5XX_Count", lb, 10)  # rejected before a target: not in RequestCount
    _put(env, elb, "RequestCount", _tg(env, "blue"), 990)
    _put(env, elb, "HTTPCode_Target_5XX_Count", _tg(env, "blue"), 10)
    src = CloudWatchSource(env, clock=lambda: NOW)
    assert src.error_rate(None, 5) == pytest.approx(2.0)  # (10 + 10) of (990 + 10)
    assert src.error_rate("blue", 5) == pytest.approx(100 * 10 / 990, abs=1e-3)  # the ELB's own 5xx have no target group


def test_cloudwatch_no_traffic_is_none(aws_platform):
    src = CloudWatchSource(aws_platform, clock=lambda: NOW)
    assert src.error_rate("green", 5) is None
    assert src.request_count("green", 5) == 0.0
    assert src.cpu("green", 5) is None
    assert src.cache_hit_ratio(5) is None and src.db_connections_pct(5) is None and src.users() is None


def test_cloudwatch_gauges(aws_platform):
    env = aws_platform
    _put(env, "AWS/EC2", "CPUUtilization", {"AutoScalingGroupName": "ftw-blue"}, 40)
    _put(env, "AWS/EC2", "CPUUtilization", {"AutoScalingGroupName": "ftw-blue"}, 60, at=NOW - dt.timedelta(minutes=1))
    _put(env, "AWS/EC2", "CPUUtilization", {"AutoScalingGroupName": "ftw-green"}, 91)
    members = aws.describe_cache(env).members
    _put(env, "AWS/ElastiCache", "CacheHits", {"CacheClusterId": members[0]}, 75)
    _put(env, "AWS/ElastiCache", "CacheMisses", {"CacheClusterId": members[0]}, 25)
    _put(env, "AWS/RDS", "DatabaseConnections", {"DBInstanceIdentifier": "ftw-db"}, 901)
    _put(env, "CWAgent", "disk_used_percent", {"AutoScalingGroupName": "ftw-green"}, 83)
    _put(env, env.platform_namespace, "RegisteredUsers", {"Environment": "sandbox"}, 2400, at=NOW - dt.timedelta(hours=2))
    _put(env, env.platform_namespace, "RegisteredUsers", {"Environment": "sandbox"}, 2500)
    src = CloudWatchSource(env, clock=lambda: NOW)
    assert src.cpu("blue", 5) == pytest.approx(50)
    assert src.cpu(None, 5) == pytest.approx(91)  # the hotter colour
    assert src.cache_hit_ratio(5) == pytest.approx(75)
    assert src.db_connections_pct(5) == pytest.approx(100 * 901 / 1802)
    assert src.disk_pct(5) == 83
    assert src.users() == 2500
    assert src.value("db_connections") == pytest.approx(50)
    _put(env, "CWAgent", "mem_used_percent", {"AutoScalingGroupName": "ftw-blue"}, 71)
    assert src.value("memory", "blue", 5) == 71  # the CloudWatch agent's gauge
    assert src.value("memory", "green", 5) is None
    with pytest.raises(ValueError):
        src.value("swap", "blue", 5)
    with pytest.raises(ValueError):
        src.value("cpu", "purple", 5)


def test_cloudwatch_series(aws_platform):
    env = aws_platform
    base = NOW.replace(second=0)
    for i in range(5):
        at = base - dt.timedelta(minutes=i)
        _put(env, "AWS/ApplicationELB", "RequestCount", _tg(env, "blue"), 100, at=at)
        _put(env, "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", _tg(env, "blue"), i, at=at)
    src = CloudWatchSource(env, clock=lambda: NOW)
    series = src.series("error_rate", "blue", 5, 60)
    assert [round(v) for _, v in series] == [4, 3, 2, 1, 0][-len(series):]
    assert all(t1 < t2 for (t1, _), (t2, _) in zip(series, series[1:]))
    assert sum(v for _, v in src.series("requests", "blue", 5, 60)) == 500


def test_metrics_source_is_chosen_per_environment(aws_platform):
    assert isinstance(metrics_source(aws_platform), CloudWatchSource)
    env = Environment(name="prom", metrics_source="prometheus", prometheus_url="http://127.0.0.1:9")
    assert isinstance(metrics_source(env), PrometheusSource)
    with pytest.raises(CloudError) as info:
        metrics_source(Environment(name="noprom", metrics_source="prometheus"))
    assert info.value.code == "NotConfigured"


# ------------------------------------------------------------------------------------------------ Prometheus

def _vector(value):
    return {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1764244830.0, value]}]}}


class FakePrometheus:
    """Answers /api/v1/query by the query text, like Prometheus's HTTP API."""

    def __init__(self, httpserver, answers):
        self.queries = []
        self.answers = answers
        httpserver.expect_request("/api/v1/query").respond_with_handler(self.query)
        httpserver.expect_request("/api/v1/query_range").respond_with_handler(self.query_range)

    def query(self, request):
        q = request.args["query"]
        self.queries.append(dict(request.args))
        for needle, answer in self.answers.items():
            if needle in q:
                return Response(json.dumps(answer), 200 if answer.get("status") == "success" else 400, content_type="application/json")
        return Response(json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}}), content_type="application/json")

    def query_range(self, request):
        self.queries.append(dict(request.args))
        start, end, step = float(request.args["start"]), float(request.args["end"]), float(request.args["step"].rstrip("s"))
        values, t = [], start
        while t <= end:
            values.append([t, "NaN" if len(values) == 1 else str(len(values))])
            t += step
        return Response(json.dumps({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"colour": "green"}, "values": values}]}}), content_type="application/json")


def local_prometheus_env(url):
    """An environment whose outbound policy allows 127.0.0.1 (like the sandbox's), with Prometheus at `url`."""
    from portal.health.models import OutboundPolicy

    env = Environment(name="prom", metrics_source="prometheus", prometheus_url=url)
    env.outbound_policy = OutboundPolicy(allow_private_targets=True)
    return env


@pytest.fixture
def prom_env(httpserver):
    return local_prometheus_env(httpserver.url_for("/").rstrip("/"))


def test_prometheus_values(httpserver, prom_env):
    fake = FakePrometheus(httpserver, {
        'status=~"5.."': _vector("2.5"),
        "histogram_quantile(0.95": _vector("0.42"),
        "increase(http_requests_total": _vector("1234"),
        "node_cpu_seconds_total": _vector("37.5"),
        "redis_keyspace_hits_total": _vector("88"),
        "pg_stat_activity_count": _vector("NaN"),
        "ftw_registered_users": _vector("2500"),
    })
    src = PrometheusSource(prom_env, clock=lambda: NOW)
    assert src.error_rate("green", 5) == 2.5
    assert 'colour=~"green"' in fake.queries[-1]["query"] and "[5m]" in fake.queries[-1]["query"]
    assert float(fake.queries[-1]["time"]) == NOW.timestamp()
    assert src.error_rate(None, 10) == 2.5
    assert 'colour=~".+"' in fake.queries[-1]["query"] and "[10m]" in fake.queries[-1]["query"]
    assert src.p95_latency("blue", 5) == 0.42
    assert src.request_count("blue", 5) == 1234
    assert src.cpu("blue", 5) == 37.5
    assert src.cache_hit_ratio(5) == 88
    assert src.db_connections_pct(5) is None  # NaN: no data
    assert src.disk_pct(5) is None  # empty vector
    assert src.users() == 2500


def test_prometheus_custom_promql_and_series(httpserver, prom_env):
    prom_env.prometheus_queries = {"cpu": 'avg(my_cpu_percent{deploy="$colour"})'}
    fake = FakePrometheus(httpserver, {"my_cpu_percent": _vector("12")})
    src = PrometheusSource(prom_env, clock=lambda: NOW)
    assert src.cpu("green", 5) == 12
    assert fake.queries[-1]["query"] == 'avg(my_cpu_percent{deploy="green"})'
    series = src.series("requests", "green", 5, 60)
    args = fake.queries[-1]
    assert float(args["end"]) - float(args["start"]) == 300 and args["step"] == "60s"
    assert [v for _, v in series] == [0.0, 2.0, 3.0, 4.0, 5.0]  # the NaN point is dropped
    assert series[0][0].tzinfo is not None


def test_prometheus_errors_in_words(httpserver, prom_env):
    FakePrometheus(httpserver, {"": {"status": "error", "errorType": "bad_data", "error": "parse error at char 5"}})
    with pytest.raises(CloudError) as info:
        PrometheusSource(prom_env, clock=lambda: NOW).error_rate("green", 5)
    assert info.value.code == "bad_data" and "parse error" in info.value.words
    assert "node_memory_MemAvailable_bytes" in PrometheusSource(prom_env).promql("memory", "blue", 5)  # node exporter
    with pytest.raises(ValueError):
        PrometheusSource(prom_env).value("swap")


def test_prometheus_unreachable(db):
    from tests.plugins.aws import free_port

    env = local_prometheus_env(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(CloudError) as info:
        PrometheusSource(env).error_rate("blue", 5)
    assert info.value.code == "PrometheusUnreachable"


def test_prometheus_on_a_private_address_is_refused_without_a_connection(httpserver):
    env = Environment(name="prod", metrics_source="prometheus", prometheus_url=httpserver.url_for("/").rstrip("/"))
    with pytest.raises(CloudError) as info:
        PrometheusSource(env).error_rate("blue", 5)
    assert info.value.code == "PrometheusRefused" and "loopback" in info.value.message
    assert httpserver.log == []


def test_prometheus_query_params_are_encoded(httpserver, prom_env):
    FakePrometheus(httpserver, {})
    PrometheusSource(prom_env, clock=lambda: NOW).error_rate("blue", 5)
    raw = httpserver.log[-1][0].query_string.decode()
    assert "query=" in raw and parse_qs(raw)["query"][0].startswith("100 * sum(rate(")
    assert not math.isnan(float(parse_qs(raw)["time"][0]))
