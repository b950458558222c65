"""Local stand-ins for the outside services the portal pages through, so a newcomer sees a page arrive.

- Twilio: the REST API's Messages and Calls create endpoints (`POST /2010-04-01/Accounts/{sid}/Messages.json`
  and `.../Calls.json`, form-encoded, HTTP Basic auth with the account SID) answering the JSON Twilio
  answers (201, a sid, status "queued"), as Twilio's Python library calls and parses them.
- Slack: the Web API's `chat.postMessage`, `chat.update` and `chat.postEphemeral` (Bearer token, JSON or form
  body), answering `{"ok": true, "ts": ...}`; the record's sender says which call it was.
- SMTP: an aiosmtpd catcher taking any mail.

Every message is recorded as a SandboxMessage row (/sandbox/messages/ lists them). They listen on
127.0.0.1 only; `manage.py sandbox` starts them, tests start them on free ports.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import re
import secrets
import threading
from collections.abc import Callable
from email import message_from_bytes, policy
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from aiosmtpd.controller import Controller
from django.db import close_old_connections
from django.utils import timezone

from portal.sandbox.models import SandboxMessage

log = logging.getLogger(__name__)
TWILIO_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC[0-9A-Za-z]+)/(?P<what>Messages|Calls)\.json$")

Recorder = Callable[..., object]
# The Web API methods the Slack stand-in answers, and the sender its record names (which call it was).
SLACK_METHODS = {"chat.postMessage": "bot", "chat.update": "bot (chat.update)", "chat.postEphemeral": "bot (ephemeral)"}


class _Writer:
    """Stores received messages from one background thread. A stand-in answers first and records after:
    the sender may hold a write transaction while it waits for the answer (a page is sent under the
    incident's row lock), and on SQLite a write from here would wait for that very transaction."""

    def __init__(self):
        self.queue: queue.Queue[dict] = queue.Queue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def __call__(self, **fields) -> None:
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="standin-recorder", daemon=True)
                self.thread.start()
        self.queue.put(fields)

    def _run(self) -> None:
        while True:
            fields = self.queue.get()
            try:
                close_old_connections()
                SandboxMessage.objects.create(**fields)
            except Exception:  # noqa: BLE001 - a lost record must not stop the stand-ins
                log.exception("could not record a sandbox message")
            finally:
                close_old_connections()
                self.queue.task_done()

    def flush(self) -> None:
        """Wait until every message received so far is stored (tests call it before they look)."""
        self.queue.join()


record = _Writer()


class _Handler(BaseHTTPRequestHandler):
    server_version = "PortalSandbox/1"

    def log_message(self, fmt, *args):  # quiet: the messages page is the log
        log.debug("stand-in %s: " + fmt, self.server.name, *args)

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))


class TwilioHandler(_Handler):
    def do_POST(self):  # noqa: N802 - http.server's name
        match = TWILIO_PATH.match(self.path.split("?")[0])
        if not match:
            return self._answer(404, {"code": 20404, "message": "The requested resource was not found", "status": 404})
        sid, what = match["sid"], match["what"]
        user = ""
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user = base64.b64decode(auth[6:]).decode(errors="replace").split(":", 1)[0]
        if user != sid:
            return self._answer(401, {"code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003",
                                      "status": 401})
        form = {k: v[0] for k, v in parse_qs(self._body().decode()).items()}
        to, sender = form.get("To", ""), form.get("From", "")
        if not to or not sender:
            return self._answer(400, {"code": 21604, "message": "A 'To' and 'From' phone number is required.", "status": 400})
        now = format_datetime(timezone.now(), usegmt=True)
        prefix = "SM" if what == "Messages" else "CA"
        msid = prefix + secrets.token_hex(16)
        if what == "Messages":
            body = form.get("Body", "")
            self.server.recorder(kind=SandboxMessage.Kind.SMS, to=to, sender=sender, body=body, provider_id=msid, raw=form)
            return self._answer(201, {
                "sid": msid, "account_sid": sid, "to": to, "from": sender, "body": body, "status": "queued",
                "num_segments": "1", "direction": "outbound-api", "api_version": "2010-04-01", "price": None,
                "price_unit": "USD", "error_code": None, "error_message": None, "date_created": now, "date_updated": now,
                "date_sent": None, "messaging_service_sid": None, "num_media": "0",
                "uri": f"/2010-04-01/Accounts/{sid}/Messages/{msid}.json", "subresource_uris": {}})
        twiml = form.get("Twiml", "")
        spoken = " ".join(re.findall(r"<Say>(.*?)</Say>", twiml)[:1]) or form.get("Url", "")
        self.server.recorder(kind=SandboxMessage.Kind.CALL, to=to, sender=sender, body=spoken, provider_id=msid, raw=form)
        return self._answer(201, {
            "sid": msid, "account_sid": sid, "to": to, "to_formatted": to, "from": sender, "from_formatted": sender,
            "status": "queued", "direction": "outbound-api", "api_version": "2010-04-01", "date_created": now,
            "date_updated": now, "start_time": None, "end_time": None, "duration": None, "price": None,
            "uri": f"/2010-04-01/Accounts/{sid}/Calls/{msid}.json", "subresource_uris": {}})


class SlackHandler(_Handler):
    def do_POST(self):  # noqa: N802 - http.server's name
        method = self.path.split("?")[0].rstrip("/").removeprefix("/api/")
        if method not in SLACK_METHODS:
            return self._answer(404, {"ok": False, "error": "unknown_method"})
        if not self.headers.get("Authorization", "").startswith("Bearer xox"):
            return self._answer(200, {"ok": False, "error": "not_authed"})
        raw = self._body()
        if "json" in self.headers.get("Content-Type", ""):
            args = json.loads(raw or b"{}")
        else:
            args = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        channel, text = str(args.get("channel") or ""), str(args.get("text") or "")
        if not channel:
            return self._answer(200, {"ok": False, "error": "channel_not_found"})
        if isinstance(args.get("blocks"), str):
            args["blocks"] = json.loads(args["blocks"])
        ts = str(args.get("ts") or "") if method == "chat.update" else f"{timezone.now().timestamp():.6f}"
        if method == "chat.update" and not ts:
            return self._answer(200, {"ok": False, "error": "message_not_found"})
        self.server.recorder(kind=SandboxMessage.Kind.SLACK, to=channel, sender=SLACK_METHODS[method], body=text, provider_id=ts, raw=args)
        if method == "chat.postEphemeral":
            return self._answer(200, {"ok": True, "message_ts": ts})
        return self._answer(200, {"ok": True, "channel": channel, "ts": ts,
                                  "message": {"type": "message", "text": text, "bot_id": "B0SANDBOX", "ts": ts}})


class _HttpStandIn:
    def __init__(self, handler, name: str, host: str, port: int, recorder: Recorder = record):
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.server.name, self.server.recorder = name, recorder
        self.thread = threading.Thread(target=self.server.serve_forever, name=f"standin-{name}", daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.server.server_address[0]}:{self.port}"

    def start(self):
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def twilio(host: str, port: int, recorder: Recorder = record) -> _HttpStandIn:
    return _HttpStandIn(TwilioHandler, "twilio", host, port, recorder)


def slack(host: str, port: int, recorder: Recorder = record) -> _HttpStandIn:
    return _HttpStandIn(SlackHandler, "slack", host, port, recorder)


class _MailCatcher:
    def __init__(self, recorder: Recorder):
        self.recorder = recorder

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        mail = message_from_bytes(envelope.content, policy=policy.default)
        part = mail.get_body(preferencelist=("plain", "html"))
        body = part.get_content() if part is not None else ""
        fields = {"kind": SandboxMessage.Kind.EMAIL, "to": ", ".join(envelope.rcpt_tos)[:254],
                  "sender": envelope.mail_from[:254], "subject": str(mail.get("Subject", ""))[:300], "body": body,
                  "provider_id": str(mail.get("Message-ID", ""))[:100], "raw": {"headers": dict(mail.items())}}
        # The ORM is synchronous: record from a worker thread, not the event loop.
        await server.loop.run_in_executor(None, lambda: self.recorder(**fields))
        return "250 Message accepted for delivery"


class SmtpStandIn:
    def __init__(self, host: str, port: int, recorder: Recorder = record):
        self.controller = Controller(_MailCatcher(recorder), hostname=host, port=port)

    @property
    def port(self) -> int:
        return self.controller.port

    def start(self):
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


def smtp(host: str, port: int, recorder: Recorder = record) -> SmtpStandIn:
    return SmtpStandIn(host, port, recorder)
