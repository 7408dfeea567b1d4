"""{{name}}: a verifier.

Accepts a request whose `X-Signature` header is the hex HMAC-SHA256 of the
raw body, keyed with `with: { secret: ... }`.

The classes below implement wit/plugin.wit (world `verify`): `Metadata` and
`Verifier`. A WIT `result` error is raised as `Err(...)`.
"""

import functools
import json
import traceback
from typing import Optional

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.metadata import Info
from wit_world.imports import host, types

VERSION = "0.1.0"
CONFIG_KEYS = {"secret"}


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
        return Info(version=VERSION, stages=[types.Stage.VERIFY])

    def validate_config(self, config: str) -> None:
        # Refuses unknown keys in the route's `with:` block, each at its path.
        unknown = [k for k in json.loads(config) if k not in CONFIG_KEYS]
        if unknown:
            raise Err([types.ConfigError(path=k, message="unknown key") for k in unknown])


def header(req: types.Request, name: str) -> Optional[str]:
    for h in req.headers:
        if h.name == name:
            return h.value.decode("utf-8", "replace")
    return None


def reject(reason: str) -> types.Verdict:
    return types.Verdict_Reject(types.Rejection(status=401, reason=reason))


class Verifier(exports.Verifier):
    @guarded
    def verify(self, req: types.Request) -> types.Verdict:
        secret = host.config_get("secret")
        if not secret:
            raise Err(types.Error_Config("`with.secret` is required"))
        signature = header(req, "x-signature")
        if signature is None:
            return reject("missing X-Signature header")
        try:
            expected = bytes.fromhex(signature.strip())
        except ValueError:
            return reject("X-Signature does not match")
        if not host.hmac_verify(host.HashAlgorithm.SHA256, secret.encode(), req.body, expected):
            return reject("X-Signature does not match")
        # The signature is a credential: the gateway must not forward it.
        return types.Verdict_Accept(
            types.Accepted(
                id=None,
                event_type=header(req, "x-event-type"),
                reply=None,
                consumed_headers=["x-signature"],
            )
        )
