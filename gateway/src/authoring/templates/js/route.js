// {{name}}: a router. Sends each message to the destinations its event type
// maps to in `with: { rules: { <event type>: [destination, ...] } }`, and to
// the route's `to:` when no rule matches.
//
// The exports below implement wit/plugin.wit (world `route`): `metadata`
// and `router`. A WIT `result` error is thrown as the error value itself
// (`{ tag, val }` for a variant such as `error`).
import { configGet } from 'hookgate:plugin/host@0.2.0';

const VERSION = '0.1.0';
const CONFIG_KEYS = ['rules'];

export const metadata = {
  describe() {
    return { version: VERSION, stages: ['route'] };
  },
  validateConfig(config) {
    const unknown = Object.keys(JSON.parse(config)).filter((k) => !CONFIG_KEYS.includes(k));
    if (unknown.length > 0) {
      // The error of a `result<_, list<config-error>>` is thrown as is.
      throw unknown.map((k) => ({ path: k, message: 'unknown key' }));
    }
  },
};

export const router = {
  route: guard((msg, defaults) => {
    const rules = JSON.parse(configGet('rules') ?? '{}');
    return rules[msg.eventType ?? ''] ?? defaults;
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
