"""python-transform: an example transform in Python (not a built-in).

Turns GitHub `issues` and `pull_request` events into a short chat message
for Slack-compatible incoming webhooks (Mattermost, Rocket.Chat, Teams
Workflows with a text action, ...):

    {"text": "[octo/repo] Issue #1 opened by alice: Title", "url": "https://..."}

Other events are dropped (an empty list), unless `with: { keep_others: true }`.
`with: { repository_prefix: false }` leaves out the `[owner/repo]` part.

    transform: [ { plugin: python-transform, with: { keep_others: false } } ]

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

VERSION = "1.0.0"
CONFIG_KEYS = {"keep_others", "repository_prefix"}
KINDS = {"issues": ("Issue", "issue"), "pull_request": ("Pull request", "pull_request")}


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


def flag(key: str, default: bool) -> bool:
    value = host.config_get(key)
    return default if value is None else value == "true"


class Metadata(exports.Metadata):
    def describe(self) -> Info:
        return Info(version=VERSION, stages=[types.Stage.TRANSFORM])

    def validate_config(self, config: str) -> None:
        errors = []
        for key, value in json.loads(config).items():
            if key not in CONFIG_KEYS:
                errors.append(types.ConfigError(path=key, message="unknown key"))
            elif not isinstance(value, bool):
                errors.append(types.ConfigError(path=key, message="must be true or false"))
        if errors:
            raise Err(errors)


class Transformer(exports.Transformer):
    @guarded
    def transform(self, msg: types.Message) -> List[types.Message]:
        kind = KINDS.get(msg.event_type or "")
        if kind is None:
            return [msg] if flag("keep_others", False) else []
        try:
            event = json.loads(msg.body)
        except ValueError as e:
            # The sender's fault: answered 400.
            raise Err(types.Error_InvalidInput(f"body is not JSON: {e}"))
        label, key = kind
        item = event.get(key) or {}
        text = "{} #{} {} by {}: {}".format(
            label,
            item.get("number", "?"),
            event.get("action", "updated"),
            (event.get("sender") or {}).get("login", "someone"),
            item.get("title", ""),
        )
        repo = (event.get("repository") or {}).get("full_name")
        if repo and flag("repository_prefix", True):
            text = f"[{repo}] {text}"
        body = json.dumps({"text": text, "url": item.get("html_url")}).encode()
        host.log(host.Level.DEBUG, f"{msg.event_type}: {text}")
        return [
            types.Message(
                id=msg.id,
                event_type=msg.event_type,
                content_type="application/json",
                headers=[types.Header(name="content-type", value=b"application/json")],
                body=body,
            )
        ]
