"""kombu's filesystem transport with atomic writes, and its Redis transport surviving a lost connection.

Stock kombu writes a message file in place under the queue's final name, so a worker polling the
folder can move and read it before the writer has finished: it then fails on half a JSON document
and the worker dies ("Unrecoverable error: JSONDecodeError"). Here the message is written under a
name the reader ignores and renamed into place, which is atomic on one filesystem.

Redis: when Redis goes away while a worker is finishing a task (acks_late), kombu tears the channel's
connection down and the late ack then fails with AttributeError ('NoneType' object has no attribute
'hostname') instead of a connection error, which Celery does not catch: the worker process exits.
Here that ack fails as the connection error it is, which Celery logs; the message stays unacknowledged
in Redis and is delivered again (every task the portal runs is idempotent: claims and row locks).
"""

from __future__ import annotations

import logging
import os
import uuid
from time import monotonic

import redis as redis_lib
from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem, virtual
from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

log = logging.getLogger(__name__)


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # A leading dot and no ".msg" ending: the reader's filter never matches a file being written.
        partial = os.path.join(self.data_folder_out, f".{uuid.uuid4().hex}.partial")
        try:
            with open(partial, "wb") as fh:
                fh.write(str_to_bytes(dumps(payload)))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(partial, final)
        except OSError as exc:
            try:
                os.unlink(partial)
            except OSError:
                pass
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc

    def queue_bind(self, queue, exchange=None, routing_key="", arguments=None, **kwargs):
        # The table in the control folder is the truth, not kombu's in-memory note of bindings: another
        # connection may have noted this binding and not yet written it, and a publish in between is
        # routed nowhere and dropped. Writing it here is a no-op when the table already has it.
        exchange = exchange or "amq.direct"
        super().queue_bind(queue, exchange, routing_key, arguments, **kwargs)
        self._queue_bind(exchange, *self.typeof(exchange).prepare_bind(queue, exchange, routing_key, arguments))

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        # Stock kombu creates the exchange table by opening it "wb" (empty) and only then locking and
        # writing it: a publisher reading the table in between gets an empty file and fails on it.
        # The first table is written aside and linked into place (atomic, and refused if another
        # binder got there first); after that, kombu's locked read-modify-write only ever grows it.
        file = self._exchange_file(exchange)
        self.control_folder.mkdir(exist_ok=True)
        if not file.exists():
            row = [filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")]
            partial = file.with_name(f".{uuid.uuid4().hex}.partial")
            partial.write_bytes(str_to_bytes(dumps(row)))
            try:
                os.link(partial, file)
                return
            except FileExistsError:
                pass
            finally:
                partial.unlink(missing_ok=True)
        super()._queue_bind(exchange, routing_key, pattern, queue)


# One binding state per control folder. Stock kombu keeps one for the whole process and skips
# writing a binding it has seen before, so a second broker folder in the same process (a test, a
# management command pointed at another data dir) never gets its exchange table and every message
# published there is dropped without an error.
_states: dict[str, virtual.BrokerState] = {}


class Transport(filesystem.Transport):
    Channel = Channel

    def __init__(self, client, **kwargs):
        super().__init__(client, **kwargs)
        folder = os.path.abspath(str((client.transport_options or {}).get("control_folder", "control")))
        self.state = _states.setdefault(folder, virtual.BrokerState())


class RedisQoS(kombu_redis.QoS):
    def _connection_gone(self) -> bool:
        conn = getattr(self.channel, "connection", None)
        return conn is None or getattr(conn, "client", None) is None

    def ack(self, delivery_tag):
        try:
            super().ack(delivery_tag)
        except AttributeError as exc:
            if not self._connection_gone():
                raise
            raise redis_lib.exceptions.ConnectionError(
                "the broker connection closed before the ack; the message will be delivered again") from exc

    def reject(self, delivery_tag, requeue=False):
        try:
            super().reject(delivery_tag, requeue=requeue)
        except AttributeError as exc:
            if not self._connection_gone():
                raise
            raise redis_lib.exceptions.ConnectionError(
                "the broker connection closed before the reject; the message will be delivered again") from exc


    def restore_unacked(self, client=None):
        # Closing a channel whose connection is already gone: the messages cannot be put back now, but
        # Redis still holds them as unacknowledged and delivers them again after the visibility
        # timeout (sooner, for intake and rollouts, through their sweeps). The worker carries on.
        try:
            return super().restore_unacked(client)
        except AttributeError:
            if not self._connection_gone():
                raise
            log.warning("broker connection gone before %d unacknowledged message(s) could be put back; "
                        "Redis delivers them again after the visibility timeout", len(self._delivered))
            self._delivered.clear()
            return []


class RedisChannel(kombu_redis.Channel):
    QoS = RedisQoS


class RedisTransport(kombu_redis.Transport):
    Channel = RedisChannel


def install() -> None:
    TRANSPORT_ALIASES["filesystem"] = "portal.broker:Transport"
    TRANSPORT_ALIASES["redis"] = TRANSPORT_ALIASES["rediss"] = "portal.broker:RedisTransport"
