// SPEC.md §10.7.1, §9.21.8: a hidden node's policy source. It asks a relay mirror over a 3-hop
// circuit (the mirror passes the GET on to an authority), so neither the authorities nor its
// guard learn which moderators the node follows or where it is. The bundle is verified as from
// any source (advancePolicy): a lying mirror can withhold a policy, never change one.
import { err } from '../errors';
import { errorBodyReason } from '../dir/fetch';
import { BUNDLE_LIMITS } from '../moderation/chain';
import { policyUrl, type PolicySource } from '../moderation/sources';
import { overMirrorCircuit, type MirrorCircuitOptions } from './client';

/** `circuits()` is null until the node can build circuits (then the fetch fails and is retried at the next refresh). */
export function mirrorPolicySource(circuits: () => MirrorCircuitOptions | null): PolicySource {
  return {
    name: 'mirror',
    async fetch(moderator, held) {
      const o = circuits();
      if (!o) throw err('POLICY_FETCH_FAILED', 'no circuits yet to reach a relay mirror');
      const u = new URL(policyUrl('http://mirror', moderator, held));
      return overMirrorCircuit(o, { method: 'GET', path: u.pathname + u.search, maxBytes: BUNDLE_LIMITS.bytes }, (r) => {
        if (r.status === 304 || r.status === 404) return null;
        if (r.status !== 200) throw err('POLICY_FETCH_FAILED', `mirror: ${errorBodyReason(r)}`, { status: r.status });
        return r.body;
      });
    },
  };
}
