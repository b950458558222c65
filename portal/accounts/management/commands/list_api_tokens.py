from django.core.management.base import BaseCommand

from portal.accounts.models import ApiToken


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


class Command(BaseCommand):
    help = "List API tokens: name, scope, environments, created, last used, expires, revoked."

    def handle(self, *args, **options):
        header = ("NAME", "SCOPE", "ENVIRONMENTS", "PREFIX", "CREATED", "LAST USED", "EXPIRES", "REVOKED")
        rows = [header]
        for t in ApiToken.objects.order_by("name"):
            rows.append((t.name, t.scope, ",".join(t.environments or []) or "-", t.prefix, _when(t.created_at),
                         _when(t.last_used_at) if t.last_used_at else "never", _when(t.expires_at) if t.expires_at else "never",
                         _when(t.revoked_at)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        for r in rows:
            self.stdout.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
