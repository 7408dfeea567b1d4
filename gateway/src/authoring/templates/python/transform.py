"""{{name}}: a transform.

Turns a JSON event into a chat message:
`{"text": "<prefix> <event type>", "data": <the event>}`, with
`with: { prefix: ... }` (default `New event:`).

The classes below implement wit/plugin.wit (world `transform`): `Metadata`
and `Transformer`. A WIT `result` error is raised as `Err(...)`.
"""

import functools
import json
import traceback
from typing import List

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.metadata import Info
from wit_world.imports import host, types

VERSION = "0.1.0"
CONFIG_KEYS = {"prefix"}


def guarded(method):
    """An exception the plugin did not mean to raise (a bug) becomes an
    `other` error with its traceback, so `hookgate plugin test` and the
    gateway's log show where it happened, instead of a bare trap."""

    @functools.wraps(method)
    def wrapper(*args):
        try:
            return method(*args)
        except Err:
            raise
        except Exception:
            raise Err(types.Error_Other(traceback.format_exc()))

    return wrapper


class Metadata(exports.Metadata):
    def describe(self) -> Info:
        return Info(version=VERSION, stages=[types.Stage.TRANSFORM])

    def validate_config(self, config: str) -> None:
        unknown = [k for k in json.loads(config) if k not in CONFIG_KEYS]
        if unknown:
            raise Err([types.ConfigError(path=k, message="unknown key") for k in unknown])


class Transformer(exports.Transformer):
    @guarded
    def transform(self, msg: types.Message) -> List[types.Message]:
        prefix = host.config_get("prefix") or "New event:"
        try:
            data = json.loads(msg.body)
        except ValueError as e:
            # The sender's fault: answered 400.
            raise Err(types.Error_InvalidInput(f"body is not JSON: {e}"))
        text = f"{prefix} {msg.event_type or 'event'}"
        body = json.dumps({"text": text, "data": data}).encode()
        return [
            types.Message(
                id=msg.id,
                event_type=msg.event_type,
                content_type="application/json",
                headers=[types.Header(name="content-type", value=b"application/json")],
                body=body,
            )
        ]
