"""The heartbeats app's refusals, in the portal's one error family."""

from __future__ import annotations

from portal.errors import Conflict, Invalid, NotFound, Unauthorized


class HeartbeatNotFound(NotFound):
    pass


class BadPingToken(Unauthorized):
    """An unknown slug or a wrong token: the same answer, so a guesser learns nothing."""

    code = "bad_ping_token"


class HeartbeatInvalid(Invalid):
    pass


class HeartbeatConflict(Conflict):
    pass
