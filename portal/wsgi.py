import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
application = get_wsgi_application()

# Before this process takes traffic (gunicorn loads this module first): no cold first requests.
if os.environ.get("PORTAL_WARMUP", "1") != "0":
    from portal.warmup import warm

    warm()
