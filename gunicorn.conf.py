"""gunicorn reads this file from the working directory (the repository root, /app in the image).

A development or test portal has DEBUG on, a derived field-encryption key and demo logins: it must
never listen beyond this machine. So gunicorn refuses to start on any address but loopback or a
unix socket unless PORTAL_ENV=production (the Dockerfile and docker-compose set it). The check runs
before gunicorn opens a socket; settings given on the command line or in GUNICORN_CMD_ARGS count.
"""

from __future__ import annotations

import ipaddress
import os


def is_loopback(bind: str) -> bool:
    """127.0.0.1:8000, [::1]:8000, localhost:8000 and unix:/path are local; 0.0.0.0, :8000, a name or fd:// are not."""
    if bind.startswith("unix:"):
        return True
    if "://" in bind:
        return False
    if bind.startswith("["):
        host = bind[1:].split("]", 1)[0]
    elif bind.count(":") == 1:
        host = bind.split(":", 1)[0]
    else:
        host = bind
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def public_binds(binds: list[str], portal_env: str | None) -> list[str]:
    """The addresses that would be refused: non-loopback ones outside production."""
    if portal_env == "production":
        return []
    return [b for b in binds if not is_loopback(b)]


def on_starting(server):
    refused = public_binds(list(server.cfg.bind or []), os.environ.get("PORTAL_ENV"))
    if refused:
        raise SystemExit(
            f"refusing to listen on {', '.join(refused)}: PORTAL_ENV is {os.environ.get('PORTAL_ENV') or 'unset (development)'}. "
            "Bind 127.0.0.1 for development, or set PORTAL_ENV=production (with its required settings) to serve others.")


# Keep-alive longer than the load balancer's idle timeout (an ALB's is 60 s): with gunicorn's default of
# 2 s, the server closes idle connections the proxy (or a busy Alertmanager) is about to reuse, and a
# POST sent on one is reset (seen in the two-web intake bench). Settings given on the command line win.
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "75"))
