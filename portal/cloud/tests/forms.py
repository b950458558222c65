"""What a browser posts for the environment form (every editable field as rendered), for the edit tests."""

from __future__ import annotations

import json

from portal.cloud.services import ENV_EDITABLE


def posted_form(env, **changes) -> dict:
    """The edit form of `env` submitted unchanged, then `changes` applied (a False checkbox is left out)."""
    data: dict = {}
    for name in ENV_EDITABLE:
        value = getattr(env, name)
        if isinstance(value, bool):
            if value:
                data[name] = "on"
        elif isinstance(value, (dict, list)):
            data[name] = json.dumps(value)
        else:
            data[name] = value
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}
