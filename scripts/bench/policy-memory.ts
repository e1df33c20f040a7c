// SPEC.md §10.5, §10.7.1: what a held policy costs in memory against its bundle's length. Builds
// a bundle of `--entries` denylist entries (default 500 000: a snapshot of 125 000 and deltas of
// 125 000 each, within the 4 MiB of one version, §10.2), installs it as a holder does
// (advancePolicy from the bundle's bytes), and prints heapUsed + external before and after, the
// bundle counted. Run with `node --expose-gc bin/run-ts.js scripts/bench/policy-memory.ts`.
import { ed25519Generate, randomBytes } from '../../src/crypto/primitives';
import { fingerprint } from '../../src/crypto/keys';
import { advancePolicy, encodeBundle, type PolicyState } from '../../src/moderation/chain';
import { NO_APPROVALS, signPolicy, verifyPolicyVersion } from '../../src/moderation/policy';

const arg = process.argv.indexOf('--entries');
const total = arg > 0 ? Number(process.argv[arg + 1]) : 500_000;
const PER_VERSION = 125_000;
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) { console.error('run with node --expose-gc'); process.exit(2); }
const used = (): number => { gc(); gc(); const m = process.memoryUsage(); return m.heapUsed + m.external; };

const key = ed25519Generate();
const window = { validAfter: Date.now() - 60_000, validUntil: Date.now() + 86_400_000 };
const raws: Buffer[] = [];
let previous: Buffer | null = null;
for (let seq = 1, done = 0; done < total; seq++) {
  const n = Math.min(PER_VERSION, total - done);
  const denyAdd = Array.from({ length: n }, () => randomBytes(32));
  const raw = signPolicy({ seq, previous, classes: [], maxShareBytes: 0, denyAdd, denyRemove: [], name: 'memory', ...NO_APPROVALS }, key, window);
  previous = verifyPolicyVersion(raw).digest;
  raws.push(raw);
  done += n;
}
let bundle: Buffer | null = encodeBundle(raws);
raws.length = 0;
const bytes = bundle.length;
const before = used() - bytes;
let state: PolicyState | null = advancePolicy(null, bundle, { moderator: fingerprint(key.publicKey), now: Date.now() }).state;
bundle = null;
const after = used();
const delta = after - before;
const mib = (n: number): string => (n / 1048576).toFixed(1);
console.log(`entries ${state.deny.size}, bundle ${mib(bytes)} MiB; held ${mib(delta)} MiB of heapUsed + external with the bundle `
  + `(${(delta / bytes).toFixed(2)}x its length), ${mib(delta - bytes)} MiB beyond it (${((delta - bytes) / bytes).toFixed(2)}x)`);
state = null;
