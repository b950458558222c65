"""`manage.py sandbox [--port 4566] [--seed N] [--interval 5]`: the local AWS sandbox with its simulator."""

from __future__ import annotations

import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from portal.sandbox import cloudflare_standin, prometheus, standins
from portal.sandbox.platform import DOMAIN, register_cloudflare
from portal.sandbox.runner import Sandbox, is_moto, port_in_use


class Command(BaseCommand):
    help = "Start moto's server on 127.0.0.1, build the platform, register the 'sandbox' environment, run the traffic simulator."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=settings.SANDBOX_HOST)
        parser.add_argument("--port", type=int, default=settings.SANDBOX_PORT)
        parser.add_argument("--status-port", type=int, default=None, help="fake status pages (default: port + 1; 0 = off)")
        parser.add_argument("--seed", type=int, default=None, help="makes the simulated numbers repeatable")
        parser.add_argument("--interval", type=float, default=settings.SANDBOX_INTERVAL_SECONDS, help="seconds between ticks")
        parser.add_argument("--ticks", type=int, default=None, help="stop after this many ticks (default: run until interrupted)")

    def handle(self, *args, **opts):
        if opts["interval"] <= 0:
            raise CommandError("--interval must be above 0 seconds")
        host, port = opts["host"], opts["port"]
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise CommandError("the sandbox listens on the loopback interface only (127.0.0.1)")
        status_port = port + 1 if opts["status_port"] is None else (opts["status_port"] or None)
        sandbox = Sandbox(host=host, port=port, status_port=status_port, interval=opts["interval"], seed=opts["seed"],
                          out=self.stdout)
        if port_in_use(host, port):
            if not is_moto(sandbox.endpoint_url):
                raise CommandError(f"port {port} is taken by something that is not a moto server; pick another with --port")
            # Another sandbox runs there: refresh its platform and our registration, and leave its simulator alone.
            sandbox.start(serve=False)
            self.stdout.write(f"A sandbox already runs on {sandbox.endpoint_url}: platform checked, environment registered.")
            return
        signal.signal(signal.SIGTERM, lambda *_: sandbox.stop_event.set())
        sandbox.start()
        if status_port:
            self.stdout.write(f"Fake status pages on http://{host}:{status_port}/<service>/api/v2/status.json")
        running = self.start_standins(host)
        edge = self.start_cloudflare(host, sandbox)
        if edge is not None:
            running.append(edge)
        prom = self.start_prometheus(host, sandbox)
        if prom is not None:
            running.append(prom)
        try:
            sandbox.run(ticks=opts["ticks"])
        except KeyboardInterrupt:
            pass
        finally:
            for standin in running:
                standin.stop()
            sandbox.stop()
            self.stdout.write("AWS sandbox stopped.")

    def start_cloudflare(self, host: str, sandbox):
        """The CloudFlare API stand-in, seeded with the zone in front of the built load balancer; the
        environment then reads DNS, CDN and storage from CloudFlare, as the plan has it."""
        port = settings.SANDBOX_CLOUDFLARE_PORT
        if port_in_use(host, port):
            self.stdout.write(f"CloudFlare API stand-in: port {port} is taken (another sandbox?); not started")
            return None
        edge = cloudflare_standin.CloudflareStandIn(host, port)
        cloudflare_standin.seed_state(edge.state, domain=DOMAIN, load_balancer_dns=sandbox.names["load_balancer_dns"],
                                      buckets=sandbox.names.get("buckets") or {})
        edge.start()
        sandbox.env = register_cloudflare(sandbox.env, base_url=edge.url, account_id=edge.state.account_id,
                                          token=edge.state.token)
        self.stdout.write(f"CloudFlare API stand-in on {edge.url} (zone {DOMAIN} in front of the load balancer)")
        return edge

    def start_prometheus(self, host: str, sandbox):
        """Debian's Prometheus with the portal's exported rules, named on the environment (when installed)."""
        port = settings.SANDBOX_PROMETHEUS_PORT
        if not prometheus.binary():
            self.stdout.write("Prometheus: not installed (apt-get install prometheus); alert rules are checked in CloudWatch only")
            return None
        if port_in_use(host, port):
            self.stdout.write(f"Prometheus: port {port} is taken (another sandbox?); not started")
            return None
        prom = prometheus.SandboxPrometheus(host, port)
        if not prom.start(sandbox.env):
            self.stdout.write(f"Prometheus: did not start (see {prometheus.home() / 'prometheus.log'})")
            return None
        sandbox.env = prometheus.register(sandbox.env, prom.url)
        self.stdout.write(f"Prometheus on {prom.url} with the portal's alert rules ({prometheus.rules_path()})")
        return prom

    def start_standins(self, host: str) -> list:
        """The Twilio, Slack and SMTP stand-ins the settings point at by default (see /sandbox/messages/)."""
        running = []
        for name, factory, port in (("Twilio API", standins.twilio, settings.SANDBOX_TWILIO_PORT),
                                    ("Slack Web API", standins.slack, settings.SANDBOX_SLACK_PORT),
                                    ("SMTP catcher", standins.smtp, settings.SANDBOX_SMTP_PORT)):
            if port_in_use(host, port):
                self.stdout.write(f"{name} stand-in: port {port} is taken (another sandbox?); not started")
                continue
            running.append(factory(host, port).start())
            self.stdout.write(f"{name} stand-in on {host}:{port} (messages: /sandbox/messages/)")
        return running
