from django.conf import settings


def portal(request):
    user = getattr(request, "user", None)
    perms = {}
    if user is not None and user.is_authenticated:
        from portal.accounts.roles import role_of

        perms = {"role": role_of(user)}
    return {
        "PORTAL_ENV": settings.PORTAL_ENV,
        "portal_role": perms.get("role", ""),
        "NAV": [
            ("/", "Dashboard"),
            ("/incidents/", "Incidents"),
            ("/deployments/", "Deployments"),
            ("/runbooks/", "Runbooks"),
            ("/health/", "Health"),
            ("/checklist/", "Checklist"),
            ("/phases/", "Phases"),
            ("/environments/", "Environments"),
            ("/audit/", "Audit"),
        ],
    }
