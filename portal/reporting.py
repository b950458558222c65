"""What the debug page and error e-mails may show: never a database or broker URL, never credentials.

Django's SafeExceptionReporterFilter hides settings whose names look secret (KEY, PASS, TOKEN...)
but shows DATABASE_URL, CELERY_BROKER_URL and any URL with a password in it. This filter also
hides every setting and request.META entry named like a URL, DSN or broker, and rewrites any
`scheme://user:password@host` it finds in the settings, META and traceback variables.
"""

from __future__ import annotations

import re

from django.views.debug import SafeExceptionReporterFilter

_USERINFO = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)(?P<userinfo>[^/?#@\s]+)@", re.IGNORECASE)


def redact_credentials(text: str, substitute: str = "********************") -> str:
    """postgres://portal:s3cret@db/portal -> postgres://********************@db/portal"""
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}{substitute}@", text)


class PortalExceptionReporterFilter(SafeExceptionReporterFilter):
    hidden_settings = re.compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|URL|URI|DSN|BROKER|CREDENTIAL", flags=re.IGNORECASE)

    def cleanse_setting(self, key, value):
        value = super().cleanse_setting(key, value)
        if type(value) is str:  # not lazy objects: reading them may have effects
            return redact_credentials(value, self.cleansed_substitute)
        return value

    def get_traceback_frame_variables(self, request, tb_frame):
        return [(name, self.cleanse_setting(name, value) if isinstance(name, str) else value)
                for name, value in super().get_traceback_frame_variables(request, tb_frame)]
