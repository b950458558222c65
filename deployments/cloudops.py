"""What deployments do to the cloud, through portal.cloud.aws (the one boto3 wrapper).

Every weight change is read back once (the wrapper's read after ModifyListener): `apply_weights`
retries until the listener shows what was asked and raises WeightsNotApplied otherwise, so a change
that did not apply is never reported as a success.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import requests

from deployments import awsextra, conf
from portal.cloud import aws
from portal.cloud.metrics import metrics_source

log = logging.getLogger(__name__)


class WeightsNotApplied(Exception):
    def __init__(self, asked: dict, seen: dict | None, attempts: int, error: str = ""):
        self.asked, self.seen, self.attempts, self.error = asked, seen, attempts, error
        super().__init__(f"listener weights {seen} after {attempts} tries, asked {asked}{': ' + error if error else ''}")


def normalise(weights: dict) -> dict[str, int]:
    return {"blue": int(weights.get("blue", 0) or 0), "green": int(weights.get("green", 0) or 0)}


def read_weights(env) -> dict[str, int]:
    return normalise(aws.get_listener_weights(env))


def apply_weights(env, weights: dict[str, int], *, attempts: int | None = None, delay: float | None = None) -> tuple[dict, int]:
    """Set the listener's weights and read them back until they match. Returns (read back, tries)."""
    asked = normalise(weights)
    attempts = int(attempts or conf.get("WEIGHT_READBACK_ATTEMPTS"))
    delay = float(conf.get("WEIGHT_READBACK_DELAY") if delay is None else delay)
    seen: dict | None = None
    error = ""
    for attempt in range(1, attempts + 1):
        try:
            # The wrapper reads the listener back after ModifyListener: that read is the one read-back.
            seen = normalise(aws.set_listener_weights(env, asked))
            if seen == asked:
                return seen, attempt
            error = ""
        except Exception as exc:  # noqa: BLE001 - a CloudError or a transport error: retry, then report
            error = str(exc)[:300]
            log.warning("weights %s on %s, try %s: %s", asked, env, attempt, error)
        if attempt < attempts:
            time.sleep(delay)
    raise WeightsNotApplied(asked, seen, attempts, error)


@dataclass(frozen=True)
class ColourCapacity:
    colour: str
    desired: int
    in_service: int
    healthy: int


def groups(env) -> dict:
    return aws.describe_groups(env)


def healthy_count(env, colour: str) -> int:
    return int(aws.healthy_count(env, colour))


def capacity(env, colour: str) -> ColourCapacity:
    group = groups(env)[colour]
    return ColourCapacity(colour, int(group.desired), int(group.in_service), healthy_count(env, colour))


def set_capacity(env, colour: str, desired: int) -> dict:
    """Set the desired capacity and read it back: {"desired", "min_size", "max_size"}."""
    widened = awsextra.widen_group_bounds(env, colour, int(desired), groups(env)[colour])
    aws.set_desired_capacity(env, colour, int(desired))
    group = groups(env)[colour]
    out = {"desired": int(group.desired), "min_size": int(group.min_size), "max_size": int(group.max_size),
           "in_service": int(group.in_service)}
    if widened:
        out["widened"] = widened
    return out


def set_launch_spec(env, colour: str, *, launch_template_version: str = "", image_id: str = "") -> dict:
    """Point the colour's auto scaling group at the release (launch template version or a new one with the image)."""
    fn = getattr(aws, "set_launch_template", None)
    if fn is not None:
        return fn(env, colour, version=launch_template_version or None, image_id=image_id or None) or {}
    return awsextra.set_launch_template(env, colour, version=launch_template_version or None, image_id=image_id or None)


def target_health(env, colour: str) -> list:
    return list(aws.describe_target_health(env, colour))


def rds_failover(env) -> None:
    aws.rds_failover(env)


def smoke_check(env, colour: str) -> tuple[bool, str, dict]:
    """HTTP checks against the new colour; without a reachable URL, its healthy targets are the signal."""
    urls = (conf.get("SMOKE_URLS") or {}).get(env.name) or []
    if urls:
        results = {}
        for template in urls:
            url = template.replace("{colour}", colour)
            try:
                r = requests.get(url, timeout=float(conf.get("SMOKE_TIMEOUT_SECONDS")), allow_redirects=False)
                results[url] = r.status_code
            except requests.RequestException as exc:
                results[url] = f"error: {exc.__class__.__name__}"
        failed = {u: s for u, s in results.items() if not (isinstance(s, int) and s < 400)}
        if failed:
            return False, f"smoke checks failed: {failed}", {"urls": results}
        return True, f"{len(results)} HTTP check(s) answered below 400", {"urls": results}
    targets = target_health(env, colour)
    states = [getattr(t, "state", "") for t in targets]
    healthy = sum(1 for s in states if s == "healthy")
    note = (f"no smoke URL is configured for {env.name} (DEPLOYMENTS_SMOKE_URLS), so the load balancer's health "
            f"checks stand in: {healthy} of {len(states)} {colour} targets healthy")
    return bool(states) and healthy == len(states), note, {"targets": states}


def metrics(env):
    """The environment's metrics source (CloudWatch or Prometheus), see portal.cloud.metrics."""
    return metrics_source(env)


def smoke_urls(env) -> list[str]:
    """The smoke URL templates configured for the environment (DEPLOYMENTS_SMOKE_URLS)."""
    return list((conf.get("SMOKE_URLS") or {}).get(env.name) or [])


def alarms_in_alarm(env) -> list[tuple[str, str]]:
    """(name, reason) of the environment's CloudWatch metric alarms that are in ALARM now."""
    return [(a.name, a.reason) for a in aws.list_alarms(env) if a.state == "ALARM"]


def template_metric(ms, spec: dict, new: str, old: str, minutes: int) -> tuple[float | None, float | None]:
    """An analysis template's extra metric for the new and the old colour: a portal metric by name, a
    PromQL query (`$colour` and `$window` filled in) on a Prometheus source, or a CloudWatch MetricStat."""
    if spec.get("metric"):
        return ms.value(spec["metric"], new, minutes), ms.value(spec["metric"], old, minutes)
    if spec.get("promql"):
        if not hasattr(ms, "scalar"):
            raise ValueError("a PromQL metric needs an environment whose metrics come from Prometheus")
        out = [ms.scalar(str(spec["promql"]).replace("$colour", c).replace("$window", f"{minutes}m")) for c in (new, old)]
        return out[0], out[1]
    if spec.get("cloudwatch"):
        import datetime as dt

        stat = dict(spec["cloudwatch"])
        end = dt.datetime.now(dt.UTC)
        query = {"Id": "m", "ReturnData": True, "MetricStat": {
            "Metric": {"Namespace": stat["namespace"], "MetricName": stat["metric_name"],
                       "Dimensions": [{"Name": k, "Value": str(v)} for k, v in (stat.get("dimensions") or {}).items()]},
            "Period": 60, "Stat": stat.get("stat", "Average")}}
        points = aws.metric_data(ms.env, [query], end - dt.timedelta(minutes=minutes), end).get("m") or []
        return (max(v for _, v in points) if points else None), None
    raise ValueError("a template metric needs `metric`, `promql` or `cloudwatch`")

