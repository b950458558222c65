"""`manage.py drill start <kind> ...` / `manage.py drill stop [--all]` / `manage.py drill list`."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from portal.cloud import aws
from portal.cloud.errors import CloudError
from portal.cloud.models import Drill, Environment
from portal.sandbox.services import DrillError, drill_start, drill_stop

ACTOR = "system:manage.py drill"


class Command(BaseCommand):
    help = "Inject a fault into the sandbox for a while (start), end drills (stop), or show the active ones (list)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        start = sub.add_parser("start", help="start a drill")
        start.add_argument("kind", choices=Drill.Kind.values)
        start.add_argument("--environment", default="sandbox")
        start.add_argument("--colour", choices=["blue", "green"], default=None)
        start.add_argument("--level", type=float, default=None, help="percent for rates, seconds for latency, instances for unhealthy-instance, percent of the phase budget for cost-spike")
        start.add_argument("--minutes", type=int, default=10)
        start.add_argument("--seed", type=int, default=None)
        start.add_argument("--service", default="", help="service slug for service-outage (e.g. openai)")
        stop = sub.add_parser("stop", help="stop drills")
        stop.add_argument("--environment", default="sandbox")
        stop.add_argument("--id", type=int, default=None, help="stop this drill only")
        stop.add_argument("--all", action="store_true", help="stop every active drill in every environment")
        lst = sub.add_parser("list", help="active drills")
        lst.add_argument("--environment", default="sandbox")

    def _env(self, name: str) -> Environment:
        env = Environment.objects.filter(name=name).first()
        if env is None:
            raise CommandError(f"no environment named {name!r} (start the sandbox first: manage.py sandbox)")
        return env

    def _warn_if_idle(self, env, colour) -> None:
        """A drill on a colour that takes no traffic raises no alert: say so, and name the live one."""
        if not colour:
            return
        try:
            weights = aws.get_listener_weights(env)
        except CloudError:
            return
        if not weights.get(colour):
            live = ", ".join(c for c, w in weights.items() if w) or "none"
            self.stderr.write(f"warning: {colour} takes 0 % of the traffic, so this drill will not fire an alert; "
                              f"live colour: {live}")

    def handle(self, *args, **opts):
        action = opts["action"]
        if action == "start":
            env = self._env(opts["environment"])
            try:
                drill = drill_start(environment=env, kind=opts["kind"], colour=opts["colour"], level=opts["level"],
                                    minutes=opts["minutes"], seed=opts["seed"], target=opts["service"], actor=ACTOR)
            except DrillError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"drill #{drill.pk} {drill.kind}{' on ' + drill.colour if drill.colour else ''}"
                              f"{' (' + drill.target + ')' if drill.target else ''} running until {drill.ends_at:%H:%M:%S} UTC (seed {drill.seed})")
            self._warn_if_idle(env, drill.colour)
        elif action == "stop":
            if opts["id"] is not None:
                drill = Drill.objects.filter(pk=opts["id"]).first()
                if drill is None:
                    raise CommandError(f"no drill #{opts['id']}")
                stopped = drill_stop(drill=drill, actor=ACTOR)
            elif opts["all"]:
                stopped = drill_stop(all=True, actor=ACTOR)
            else:
                stopped = drill_stop(environment=self._env(opts["environment"]), all=True, actor=ACTOR)
            self.stdout.write(f"stopped {len(stopped)} drill{'s' if len(stopped) != 1 else ''}"
                              + (": " + ", ".join(f"#{d.pk} {d.kind}" for d in stopped) if stopped else ""))
        else:
            env = self._env(opts["environment"])
            now = timezone.now()
            drills = Drill.objects.filter(environment=env, stopped_at__isnull=True, ends_at__gt=now)
            for d in drills:
                self.stdout.write(f"#{d.pk} {d.kind} {d.colour or '-'} level={d.level if d.level is not None else '-'} "
                                  f"{d.target or ''} ends {d.ends_at:%H:%M:%S}")
            if not drills:
                self.stdout.write("no active drills")
