// {{name}}: a router. Sends each message to the destinations its event type
// maps to in `with: { rules: { <event type>: [destination, ...] } }`, and to
// the route's `to:` when no rule matches.
//
// The exports below implement wit/plugin.wit (world `route`): `metadata`
// and `router`. A WIT `result` error is thrown as `{ tag, val }`.
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
      throw { tag: 'err', val: unknown.map((k) => ({ path: k, message: 'unknown key' })) };
    }
  },
};

export const router = {
  route(msg, defaults) {
    const rules = JSON.parse(configGet('rules') ?? '{}');
    return rules[msg.eventType ?? ''] ?? defaults;
  },
};
