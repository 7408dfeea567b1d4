// {{name}}: a transform. Turns a JSON event into a chat message:
// `{"text": "<prefix> <event type>", "data": <the event>}`, with
// `with: { prefix: ... }` (default `New event:`).
//
// The exports below implement wit/plugin.wit (world `transform`): `metadata`
// and `transformer`. A WIT `result` error is thrown as the error value itself
// (`{ tag, val }` for a variant such as `error`); byte
// lists are Uint8Arrays.
import { configGet } from 'hookgate:plugin/host@0.2.0';

const VERSION = '0.1.0';
const CONFIG_KEYS = ['prefix'];

export const metadata = {
  describe() {
    return { version: VERSION, stages: ['transform'] };
  },
  validateConfig(config) {
    const unknown = Object.keys(JSON.parse(config)).filter((k) => !CONFIG_KEYS.includes(k));
    if (unknown.length > 0) {
      // The error of a `result<_, list<config-error>>` is thrown as is.
      throw unknown.map((k) => ({ path: k, message: 'unknown key' }));
    }
  },
};

export const transformer = {
  transform: guard((msg) => {
    const prefix = configGet('prefix') ?? 'New event:';
    let data;
    try {
      data = JSON.parse(new TextDecoder().decode(msg.body));
    } catch (e) {
      // The sender's fault: answered 400.
      throw { tag: 'invalid-input', val: `body is not JSON: ${e.message}` };
    }
    const body = JSON.stringify({ text: `${prefix} ${msg.eventType ?? 'event'}`, data });
    return [
      {
        id: msg.id,
        eventType: msg.eventType,
        contentType: 'application/json',
        headers: [{ name: 'content-type', value: new TextEncoder().encode('application/json') }],
        body: new TextEncoder().encode(body),
      },
    ];
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
