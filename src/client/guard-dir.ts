// SPEC.md §6.10.1: the directory through the guard. Once a client has a consensus and a guard, it
// fetches newer consensuses from its guards' directory mirrors over a one-hop circuit and a
// BEGIN_DIR stream (as Tor does), speaking the same HTTP it would speak to a mirror's port; the
// authorities never see its address again. The guard already knows the client's address and that
// it uses Bitcloud, so it learns nothing new.
import type { Duplex } from 'node:stream';
import type { TunnelSource } from '../dir/consensus-fetch';
import { fetchConsensusBytes, httpRequest, type HttpRequestOptions, type HttpResponse } from '../dir/fetch';
import type { ConsensusRelay } from '../dir/types';
import type { CircuitBuilder } from './circuit-builder';
import type { GuardSet } from './guards';
import { STREAM_OPEN_TIMEOUT_MS, type ClientCircuit } from './client-circuit';
import { shuffle } from '../crypto/primitives';
import { canBeHop, isRunningValid } from './weighting';

/** Guards asked, in the order of the guard set, before giving up until the next refresh. */
export const MAX_DIR_GUARDS = 3;

/**
 * The guard mirrors to fetch from: the sampled guards of `guards` that the consensus in hand lists
 * as running mirrors (Guard, Running, Valid and a directory port), first ones first, at most
 * MAX_DIR_GUARDS. Empty when the client has no consensus or no sampled guard yet (bootstrap).
 */
export function guardDirSources(builder: CircuitBuilder, guards: GuardSet, relays: readonly ConsensusRelay[] | null, max = MAX_DIR_GUARDS): TunnelSource[] {
  return dirGuards(guards, relays, max).map((r) => beginDirSource(builder, r));
}

/**
 * An HTTP GET to one guard's mirror over BEGIN_DIR: the request speaks the same HTTP it would to
 * the mirror's port, the URL's host is an IP literal so nothing is ever resolved.
 */
export type GuardDirGet = (pathAndQuery: string, o: Omit<HttpRequestOptions, 'createConnection'>) => Promise<HttpResponse>;

/**
 * SPEC.md §6.10.1: one guard's mirror as a source of several requests (the reward chain is paged):
 * the one-hop circuit is built on the first request and each request gets its own BEGIN_DIR
 * stream on it; `close()` destroys the circuit.
 */
export function guardDirClient(builder: CircuitBuilder, guard: ConsensusRelay): { label: string; get: GuardDirGet; close(): void } {
  let circ: ClientCircuit | null = null;
  let building: Promise<ClientCircuit> | null = null;
  return {
    label: `guard:${guard.fingerprint}`,
    async get(pathAndQuery, o) {
      building ??= builder.buildPath([guard]).then((c) => { circ = c; return c; });
      const c = await building;
      const { stream } = await c.openStream({ kind: 'begin_dir' }, o.timeoutMs ?? STREAM_OPEN_TIMEOUT_MS);
      return httpRequest(`http://127.0.0.1${pathAndQuery}`, { ...o, createConnection: () => stream as unknown as Duplex });
    },
    close() {
      if (circ) circ.destroy();
      else void building?.then((c) => c.destroy(), () => {});
    },
  };
}

/** The sampled guards' mirrors as HTTP clients (same candidates and order as guardDirSources). */
export function guardDirClients(builder: CircuitBuilder, guards: GuardSet, relays: readonly ConsensusRelay[] | null, max = MAX_DIR_GUARDS): ReturnType<typeof guardDirClient>[] {
  return dirGuards(guards, relays, max).map((r) => guardDirClient(builder, r));
}

function dirGuards(guards: GuardSet, relays: readonly ConsensusRelay[] | null, max: number): ConsensusRelay[] {
  if (!relays) return [];
  const byFp = new Map(relays.map((r) => [r.fingerprint.toLowerCase(), r]));
  const out: ConsensusRelay[] = [];
  for (const g of guards.guards) {
    const r = byFp.get(g.fingerprint);
    if (!r || !r.flags.has('Guard') || !r.flags.has('Running') || !r.flags.has('Valid') || !(r.dirPort > 0)) continue;
    out.push(r);
    if (out.length >= max) break;
  }
  return out;
}

/** One guard's mirror: a one-hop circuit to it, BEGIN_DIR, one HTTP GET, then the circuit is torn down. */
export function beginDirSource(builder: CircuitBuilder, guard: ConsensusRelay): TunnelSource {
  return circuitDirSource(`guard:${guard.fingerprint}`, () => builder.buildPath([guard]));
}

/** A mirror reached over a circuit built for each fetch: BEGIN_DIR at its last hop, one HTTP GET, then the circuit is torn down. */
function circuitDirSource(label: string, build: () => Promise<ClientCircuit>): TunnelSource {
  return {
    label,
    async fetch(o) {
      const circ = await build();
      try {
        const { stream } = await circ.openStream({ kind: 'begin_dir' }, o.timeoutMs ?? STREAM_OPEN_TIMEOUT_MS);
        // The request goes over `stream`; the URL's host is an IP literal so nothing is ever resolved.
        return await fetchConsensusBytes('http://127.0.0.1', { ...o, createConnection: () => stream as unknown as Duplex });
      } finally {
        circ.destroy();
      }
    },
  };
}

/** Relay mirrors asked over 3-hop circuits by a hidden node when its guards' mirrors gave nothing. */
export const MAX_CIRCUIT_MIRRORS = 3;

/**
 * SPEC.md §9.21.1: relay mirrors over 3-hop circuits (guard → middle → mirror, BEGIN_DIR at the
 * mirror) as consensus sources, for a hidden node whose guards' mirrors gave nothing: the mirror
 * sees a circuit, not the node's address. Up to `max` running, valid relays with a directory
 * port, in random order; each fetch builds its own circuit and destroys it after the answer.
 */
export function mirrorCircuitSources(
  relays: readonly ConsensusRelay[] | null, buildTo: (last: ConsensusRelay) => Promise<ClientCircuit>, max = MAX_CIRCUIT_MIRRORS,
): TunnelSource[] {
  const mirrors = shuffle((relays ?? []).filter((r) => isRunningValid(r) && canBeHop(r) && r.dirPort > 0)).slice(0, max);
  return mirrors.map((m) => circuitDirSource(`circuit:${m.fingerprint}`, () => buildTo(m)));
}
