// SPEC.md §6.10.1: the directory through the guard. Once a client has a consensus and a guard, it
// fetches newer consensuses from its guards' directory mirrors over a one-hop circuit and a
// BEGIN_DIR stream (as Tor does), speaking the same HTTP it would speak to a mirror's port; the
// authorities never see its address again. The guard already knows the client's address and that
// it uses Bitcloud, so it learns nothing new.
import type { Duplex } from 'node:stream';
import type { TunnelSource } from '../dir/consensus-fetch';
import { fetchConsensusBytes } from '../dir/fetch';
import type { ConsensusRelay } from '../dir/types';
import type { CircuitBuilder } from './circuit-builder';
import type { GuardSet } from './guards';

/** Guards asked, in the order of the guard set, before giving up until the next refresh. */
export const MAX_DIR_GUARDS = 3;

/**
 * The guard mirrors to fetch from: the sampled guards of `guards` that the consensus in hand lists
 * as running mirrors (Guard, Running, Valid and a directory port), first ones first, at most
 * MAX_DIR_GUARDS. Empty when the client has no consensus or no sampled guard yet (bootstrap).
 */
export function guardDirSources(builder: CircuitBuilder, guards: GuardSet, relays: readonly ConsensusRelay[] | null, max = MAX_DIR_GUARDS): TunnelSource[] {
  if (!relays) return [];
  const byFp = new Map(relays.map((r) => [r.fingerprint.toLowerCase(), r]));
  const out: TunnelSource[] = [];
  for (const g of guards.guards) {
    const r = byFp.get(g.fingerprint);
    if (!r || !r.flags.has('Guard') || !r.flags.has('Running') || !r.flags.has('Valid') || !(r.dirPort > 0)) continue;
    out.push(beginDirSource(builder, r));
    if (out.length >= max) break;
  }
  return out;
}

/** One guard's mirror: a one-hop circuit to it, BEGIN_DIR, one HTTP GET, then the circuit is torn down. */
export function beginDirSource(builder: CircuitBuilder, guard: ConsensusRelay): TunnelSource {
  return {
    label: `guard:${guard.fingerprint}`,
    async fetch(o) {
      const circ = await builder.buildPath([guard]);
      try {
        const { stream } = await circ.openStream({ kind: 'begin_dir' }, o.timeoutMs ?? 15_000);
        // The request goes over `stream`; the URL's host is an IP literal so nothing is ever resolved.
        return await fetchConsensusBytes('http://127.0.0.1', { ...o, createConnection: () => stream as unknown as Duplex });
      } finally {
        circ.destroy();
      }
    },
  };
}
