from django.conf import settings
from django.utils.functional import SimpleLazyObject


def portal(request):
    user = getattr(request, "user", None)
    role: object = ""
    if user is not None and user.is_authenticated:
        from portal.accounts.roles import role_of

        # Read when a template shows it (the top bar), not for every htmx panel that never does:
        # the role is a query on the user's groups.
        role = SimpleLazyObject(lambda: role_of(user))
    return {
        "PORTAL_ENV": settings.PORTAL_ENV,
        "portal_role": role,
        "NAV": [
            ("/", "Dashboard"),
            ("/incidents/", "Incidents"),
            ("/oncall/", "On call"),
            ("/deployments/", "Deployments"),
            ("/runbooks/", "Runbooks"),
            ("/health/", "Health"),
            ("/checklist/", "Checklist"),
            ("/phases/", "Phases"),
            ("/environments/", "Environments"),
            ("/audit/", "Audit"),
        ],
    }
