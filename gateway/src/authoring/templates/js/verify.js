// {{name}}: a verifier. Accepts a request whose `X-Signature` header is the
// hex HMAC-SHA256 of the raw body, keyed with `with: { secret: ... }`.
//
// The exports below implement wit/plugin.wit (world `verify`): `metadata`
// and `verifier`. A WIT `result` error is thrown as the error value itself
// (`{ tag, val }` for a variant such as `error`); byte
// lists are Uint8Arrays.
import { configGet, hmacVerify } from 'hookgate:plugin/host@0.2.0';

const VERSION = '0.1.0';
const CONFIG_KEYS = ['secret'];

export const metadata = {
  describe() {
    return { version: VERSION, stages: ['verify'] };
  },
  // Refuses unknown keys in the route's `with:` block, each at its path.
  validateConfig(config) {
    const unknown = Object.keys(JSON.parse(config)).filter((k) => !CONFIG_KEYS.includes(k));
    if (unknown.length > 0) {
      // The error of a `result<_, list<config-error>>` is thrown as is.
      throw unknown.map((k) => ({ path: k, message: 'unknown key' }));
    }
  },
};

function header(req, name) {
  const h = req.headers.find((h) => h.name === name);
  return h === undefined ? undefined : new TextDecoder().decode(h.value);
}

function hexToBytes(hex) {
  if (!/^([0-9a-fA-F]{2})*$/.test(hex)) return undefined;
  return new Uint8Array(hex.match(/../g)?.map((b) => parseInt(b, 16)) ?? []);
}

const reject = (reason) => ({ tag: 'reject', val: { status: 401, reason } });

export const verifier = {
  verify: guard((req) => {
    const secret = configGet('secret');
    if (!secret) throw { tag: 'config', val: '`with.secret` is required' };
    const signature = header(req, 'x-signature');
    if (signature === undefined) return reject('missing X-Signature header');
    const expected = hexToBytes(signature.trim());
    const key = new TextEncoder().encode(secret);
    if (expected === undefined || !hmacVerify('sha256', key, req.body, expected)) {
      return reject('X-Signature does not match');
    }
    return {
      tag: 'accept',
      val: {
        id: undefined,
        eventType: header(req, 'x-event-type'),
        reply: undefined,
        // The signature is a credential: the gateway must not forward it.
        consumedHeaders: ['x-signature'],
      },
    };
  }),
};

// An exception the plugin did not mean to throw (a bug) becomes an `other`
// error with its message and stack, so `hookgate plugin test` and the
// gateway's log show where it happened, instead of a bare trap.
function guard(fn) {
  return (...args) => {
    try {
      return fn(...args);
    } catch (e) {
      if (e instanceof Error) throw { tag: 'other', val: `${e}\n${e.stack ?? ''}`.trim() };
      throw e;
    }
  };
}
