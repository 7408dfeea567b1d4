// js-verifier: an example verifier in JavaScript (not a built-in).
//
// The sender signs `<timestamp>.<body>` with HMAC-SHA256 and a shared
// secret, and sends
//
//   X-Timestamp: <unix seconds>
//   X-Signature: v1=<hex HMAC>[,v1=<hex HMAC>...]   (several while keys rotate)
//   X-Delivery-Id: <unique id>                       (optional)
//
// The plugin accepts a request whose signature matches and whose timestamp
// is within `tolerance` seconds of its arrival (default 300), so a captured
// request cannot be replayed later. The event type is the body's `type`.
//
//   verify: { plugin: js-verifier, with: { secret: "${SECRET}", tolerance: 300 } }
//
// The exports implement wit/plugin.wit (world `verify`). A WIT `result`
// error is thrown as the error value itself (`{ tag, val }` for a variant
// such as `error`); byte lists are Uint8Arrays.
import { configGet, hmac, constantTimeEq, log } from 'hookgate:plugin/host@0.2.0';

const VERSION = '1.0.0';
const CONFIG_KEYS = ['secret', 'tolerance'];
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export const metadata = {
  describe() {
    return { version: VERSION, stages: ['verify'] };
  },
  // Refuses unknown keys and a bad tolerance at `hookgate check` and reload,
  // each at its path, instead of at the first webhook.
  validateConfig(config) {
    const errors = [];
    const with_ = JSON.parse(config);
    for (const key of Object.keys(with_)) {
      if (!CONFIG_KEYS.includes(key)) errors.push({ path: key, message: 'unknown key' });
    }
    if ('tolerance' in with_ && !(Number.isInteger(with_.tolerance) && with_.tolerance > 0)) {
      errors.push({ path: 'tolerance', message: 'must be a whole number of seconds above 0' });
    }
    // The error of a `result<_, list<config-error>>` is thrown as is.
    if (errors.length > 0) throw errors;
  },
};

function header(req, name) {
  const h = req.headers.find((h) => h.name === name);
  return h === undefined ? undefined : decoder.decode(h.value);
}

function hexToBytes(hex) {
  if (!/^([0-9a-fA-F]{2})+$/.test(hex)) return undefined;
  return new Uint8Array(hex.match(/../g).map((b) => parseInt(b, 16)));
}

const reject = (reason) => ({ tag: 'reject', val: { status: 401, reason } });

export const verifier = {
  verify: guard((req) => {
    const secret = configGet('secret');
    if (!secret) throw { tag: 'config', val: '`with.secret` is required' };
    const tolerance = Number(configGet('tolerance') ?? 300);

    const timestamp = header(req, 'x-timestamp');
    const signatures = header(req, 'x-signature');
    if (timestamp === undefined || signatures === undefined) {
      return reject('missing X-Timestamp or X-Signature header');
    }
    if (!/^[0-9]{1,12}$/.test(timestamp)) return reject('X-Timestamp is not a number');
    // Arrival time, not the clock now: the check is about when it came.
    // u64 arrives as a BigInt.
    const age = Math.abs(Number(req.receivedAtMs) / 1000 - Number(timestamp));
    if (age > tolerance) return reject(`X-Timestamp is ${Math.round(age)} s away (tolerance ${tolerance} s)`);

    // One HMAC, compared in constant time with every v1= candidate.
    const signed = new Uint8Array([...encoder.encode(`${timestamp}.`), ...req.body]);
    const mac = hmac('sha256', encoder.encode(secret), signed);
    const candidates = signatures
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s.startsWith('v1='))
      .map((s) => hexToBytes(s.slice(3)))
      .filter((b) => b !== undefined);
    if (!candidates.some((c) => constantTimeEq(c, mac))) {
      return reject('X-Signature does not match');
    }

    let eventType;
    try {
      eventType = JSON.parse(decoder.decode(req.body)).type;
    } catch {
      log('debug', 'body is not JSON: no event type');
    }
    return {
      tag: 'accept',
      val: {
        id: header(req, 'x-delivery-id'),
        eventType: typeof eventType === 'string' ? eventType : undefined,
        reply: undefined,
        // Credentials: the gateway must not forward them.
        consumedHeaders: ['x-signature', 'x-timestamp'],
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
