"""kombu's filesystem transport with atomic writes.

Stock kombu writes a message file in place under the queue's final name, so a worker polling the
folder can move and read it before the writer has finished: it then fails on half a JSON document
and the worker dies ("Unrecoverable error: JSONDecodeError"). Here the message is written under a
name the reader ignores and renamed into place, which is atomic on one filesystem.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem, virtual
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


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


def install() -> None:
    TRANSPORT_ALIASES["filesystem"] = "portal.broker:Transport"
