"""{{name}}: a router.

Sends each message to the destinations its event type maps to in
`with: { rules: { <event type>: [destination, ...] } }`, and to the route's
`to:` when no rule matches.

The classes below implement wit/plugin.wit (world `route`): `Metadata` and
`Router`. A WIT `result` error is raised as `Err(...)`.
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
CONFIG_KEYS = {"rules"}


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
        return Info(version=VERSION, stages=[types.Stage.ROUTE])

    def validate_config(self, config: str) -> None:
        unknown = [k for k in json.loads(config) if k not in CONFIG_KEYS]
        if unknown:
            raise Err([types.ConfigError(path=k, message="unknown key") for k in unknown])


class Router(exports.Router):
    @guarded
    def route(self, msg: types.Message, defaults: List[str]) -> List[str]:
        rules = json.loads(host.config_get("rules") or "{}")
        return rules.get(msg.event_type or "", defaults)
