"""`manage.py sandbox` and `manage.py drill`: the sandbox process end to end, fake status pages, idempotent reruns."""

import io
import threading

import pytest
import requests
from django.core.management import CommandError, call_command

from portal.cloud import aws
from portal.cloud.models import Drill, Environment, SimulatorState
from portal.sandbox.runner import Sandbox
from portal.sandbox.statuspages import status_page_url
from tests.plugins.aws import free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def running_sandbox(transactional_db):  # the status pages answer from another thread: data must be committed
    from portal.cloud.clients import reset_cache

    reset_cache()
    port, status_port = free_port(), free_port()
    sandbox = Sandbox(port=port, status_port=status_port, interval=0.2, seed=5, out=io.StringIO())
    sandbox.start()
    yield sandbox
    sandbox.stop()
    reset_cache()


def test_sandbox_runs_registers_and_simulates(running_sandbox, admin_user):
    sb = running_sandbox
    env = Environment.objects.get(name="sandbox")
    assert env.endpoint_url == sb.endpoint_url and env.credentials_mode == "static"
    assert aws.get_listener_weights(env) == {"blue": 100, "green": 0}
    assert aws.describe_groups(env)["blue"].in_service == 2
    assert sb.run(ticks=3) == 3
    state = SimulatorState.objects.get(environment=env)
    assert state.ticks == 3 and state.status_port == sb.status_port
    assert aws.bucket_sizes(env)["photos"] > 0
    assert "users=" in sb.out.getvalue()

    status = f"http://127.0.0.1:{sb.status_port}"
    page = requests.get(f"{status}/openai/api/v2/status.json", timeout=5).json()
    assert page["status"] == {"indicator": "none", "description": "All Systems Operational"}
    assert requests.get(f"{status}/stripe/", timeout=5).status_code == 200
    out = io.StringIO()
    call_command("drill", "start", "service-outage", "--service", "stripe", "--minutes", "3", stdout=out)
    call_command("drill", "start", "service-outage", "--minutes", "3", stdout=out)  # default service: openai
    assert requests.get(f"{status}/stripe/", timeout=5).status_code == 503
    assert requests.get(f"{status}/openai/api/v2/status.json", timeout=5).json()["status"]["indicator"] == "major"
    assert requests.get(f"{status}/twilio/api/v2/status.json", timeout=5).json()["status"]["indicator"] == "none"
    assert requests.get(f"{status}/nope/api/v2/status.json", timeout=5).status_code == 404
    call_command("drill", "stop", stdout=out)
    assert "stopped 2 drills" in out.getvalue()
    assert requests.get(f"{status}/stripe/", timeout=5).status_code == 200

    assert status_page_url(env, "openai") == f"{status}/openai/api/v2/status.json"
    assert status_page_url(env, "stripe") == f"{status}/stripe/"


def test_second_sandbox_on_the_same_port_reuses_it(running_sandbox):
    out = io.StringIO()
    call_command("sandbox", "--port", str(running_sandbox.port), stdout=out)
    assert "already runs" in out.getvalue()
    env = Environment.objects.get(name="sandbox")
    assert aws.describe_groups(env)["blue"].desired == 2  # not rebuilt twice
    assert len(aws.list_alarms(env)) == 9


def test_sandbox_loop_stops_on_signal(running_sandbox):
    t = threading.Thread(target=running_sandbox.run)
    t.start()
    running_sandbox.stop_event.wait(0.5)
    running_sandbox.stop_event.set()
    t.join(5)
    assert not t.is_alive()


def test_sandbox_command_refuses_a_foreign_port(db, httpserver):
    with pytest.raises(CommandError, match="not a moto server"):
        call_command("sandbox", "--port", str(httpserver.port), stdout=io.StringIO())
    with pytest.raises(CommandError, match="loopback"):
        call_command("sandbox", "--host", "0.0.0.0", stdout=io.StringIO())


def test_drill_command_start_validates_and_is_audited(aws_platform):
    from portal.audit.models import AuditEvent

    out = io.StringIO()
    call_command("drill", "start", "error-rate", "--colour", "green", "--level", "20", "--minutes", "5", "--seed", "3", stdout=out)
    drill = Drill.objects.get()
    assert (drill.kind, drill.colour, drill.level, drill.seed) == ("error-rate", "green", 20.0, 3)
    assert AuditEvent.objects.filter(verb="drill.start", actor_label="system:manage.py drill").exists()
    with pytest.raises(CommandError, match="between 0 and 100"):
        call_command("drill", "start", "cpu", "--level", "150", stdout=out)
    with pytest.raises(CommandError, match="no environment named"):
        call_command("drill", "start", "cpu", "--environment", "production", stdout=out)
    call_command("drill", "list", stdout=out)
    assert "error-rate green" in out.getvalue()
    call_command("drill", "stop", "--all", stdout=out)
    drill.refresh_from_db()
    assert drill.stopped_at is not None


def test_drills_refused_on_real_environments(db, admin_user):
    from portal.sandbox.services import DrillError, drill_start

    prod = Environment.objects.create(name="production", is_production=True, credentials_mode="role",
                                      role_arn="arn:aws:iam::123456789012:role/ops")
    with pytest.raises(DrillError, match="only in the sandbox"):
        drill_start(environment=prod, kind="error-rate", colour="green", actor=admin_user)


def test_drill_on_a_colour_without_traffic_warns_and_names_the_live_one(aws_platform):
    out, err = io.StringIO(), io.StringIO()
    call_command("drill", "start", "error-rate", "--colour", "green", "--level", "40", "--minutes", "5", stdout=out, stderr=err)
    assert "green takes 0 % of the traffic" in err.getvalue() and "live colour: blue" in err.getvalue()
    err = io.StringIO()
    call_command("drill", "start", "error-rate", "--colour", "blue", "--level", "40", "--minutes", "5", stdout=out, stderr=err)
    assert err.getvalue() == ""
