"""What a web process's first requests would otherwise pay for, done before it takes traffic.

gunicorn loads the WSGI module in each worker before that worker accepts a connection, so work done
here is never on a request: the URL conf and every view module (the API's routers and schemas are
built on import), every app's tasks (the first enqueue would import them all), the broker connection
the first alert would open, and the templates of the pages on-call opens first. A failure here is
logged and the process still starts: a broker that is down at boot is the sweep's business, not a
reason to refuse traffic.
"""

from __future__ import annotations

import logging
from time import perf_counter

from portal.cloud.clients import warm_clients

log = logging.getLogger(__name__)

PAGES = ("base.html", "dashboard.html", "incidents/list.html", "incidents/detail.html", "incidents/_rows.html")
PATHS = ("/api/v1/alerts/alertmanager", "/api/v1/alerts/sns", "/incidents/", "/")


def warm() -> dict[str, float]:
    """Run each step, return how long each took (seconds); a step that fails is logged and skipped."""
    timings: dict[str, float] = {}

    def step(name, fn):
        t = perf_counter()
        try:
            fn()
        except Exception:  # noqa: BLE001 - warming is best effort; the request path handles its own errors
            log.warning("warm-up step %s failed", name, exc_info=True)
        timings[name] = perf_counter() - t

    def urls():
        from django.urls import Resolver404, get_resolver, resolve

        get_resolver().url_patterns  # noqa: B018 - imports the URL conf and every view module
        for path in PATHS:
            try:
                resolve(path)
            except Resolver404:
                pass

    def tasks():
        from portal.celery import app

        app.loader.import_default_modules()

    def broker():
        from portal.celery import app

        with app.producer_or_acquire() as producer:
            producer.connection.ensure_connection(max_retries=1)

    def templates():
        from django.template import TemplateDoesNotExist
        from django.template.loader import get_template

        for name in PAGES:
            try:
                get_template(name)
            except TemplateDoesNotExist:
                pass

    step("urls", urls)
    step("tasks", tasks)
    step("broker", broker)
    step("templates", templates)
    step("aws", warm_clients)
    log.info("warm-up: %s", ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in timings.items()))
    return timings
