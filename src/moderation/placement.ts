// SPEC.md §10.8: the uploader's side of moderation. A storage node lists its moderators in its
// descriptor, hence in the consensus (none = unmoderated). Before placing shares of class C, the
// client fetches the policies of the moderators that appear there and keeps only the nodes whose
// every policy admits C (and the share size); an unmoderated node admits encrypted-private only.
// Too few such nodes fails before anything is sent, naming the class (PLACEMENT_TOO_FEW_NODES).
import { err } from '../errors';
import { advancePolicy, admittingRule, type PolicyState } from './chain';
import { ContentClass } from './policy';
import type { PolicySource } from './sources';

/** What placement needs to know of a node (ConsensusRelay satisfies it). */
export interface ModeratedNode {
  fingerprint: string;
  moderators: readonly string[];
  unmoderated: boolean;
}

/** The reason a node does not admit a class, or null when it does. */
export function classRefusal(node: ModeratedNode, cls: string, policies: ReadonlyMap<string, PolicyState | null>, shareBytes = 0): string | null {
  if (node.unmoderated || node.moderators.length === 0) {
    return cls === ContentClass.ENCRYPTED_PRIVATE ? null : 'unmoderated: encrypted-private only';
  }
  for (const m of node.moderators) {
    const p = policies.get(m);
    if (!p) return `policy of moderator ${m} unknown`;
    const rule = admittingRule(p, cls);
    if (!rule) return `moderator ${m} does not allow ${cls}`;
    const limits = [rule.maxShareBytes, p.maxShareBytes].filter((x) => x > 0);
    if (shareBytes > 0 && limits.length && shareBytes > Math.min(...limits)) return `moderator ${m} limits shares to ${Math.min(...limits)} bytes`;
  }
  return null;
}

/** The fingerprints of the nodes that admit `cls` (with shares of up to `shareBytes`). */
export function nodesAdmitting(nodes: readonly ModeratedNode[], cls: string, policies: ReadonlyMap<string, PolicyState | null>, shareBytes = 0): Set<string> {
  return new Set(nodes.filter((n) => classRefusal(n, cls, policies, shareBytes) === null).map((n) => n.fingerprint));
}

/** PLACEMENT_TOO_FEW_NODES naming the class, when fewer than `need` nodes admit it. */
export function requireNodesForClass(cls: string, have: number, need: number, total: number): void {
  if (have < need) {
    throw err('PLACEMENT_TOO_FEW_NODES', `need ${need} distinct storage nodes that admit content class ${cls}; ${have} of ${total} do`, { need, have, total, contentClass: cls });
  }
}

/** SPEC.md §10.8: policy fetches a client keeps in flight at once. */
export const POLICY_FETCHES_IN_FLIGHT = 4;
/**
 * SPEC.md §10.8: the distinct moderators a client considers for one placement (4 × the 16 a node
 * may list, §10.6): those with the most consensus weight behind them, ties by fingerprint. The
 * nodes of the others count as not admitting, like nodes whose moderator's policy cannot be obtained.
 */
export const MAX_PLACEMENT_MODERATORS = 64;

/** A storage node as placement weighs it (ConsensusRelay satisfies it). */
export interface WeightedModeratedNode extends ModeratedNode {
  /** Consensus weight, KB/s (§6.6). */
  weight: number;
}

/**
 * SPEC.md §10.8: the moderators a placement considers. Each node's listing of a moderator counts
 * the node's consensus weight (negative or non-finite counts 0; a node naming a moderator twice
 * counts once), so nodes without weight cannot crowd the real moderators out of the 64 however
 * many of them list made-up ones. A moderator with no weight behind it is not considered. At most
 * MAX_PLACEMENT_MODERATORS, by decreasing weight, ties by the lower fingerprint.
 */
export function placementModerators(nodes: readonly WeightedModeratedNode[]): string[] {
  const weightOf = new Map<string, number>();
  for (const n of nodes) {
    const w = Number.isFinite(n.weight) && n.weight > 0 ? n.weight : 0;
    if (w === 0) continue;
    for (const m of new Set(n.moderators)) weightOf.set(m, (weightOf.get(m) ?? 0) + w);
  }
  return [...weightOf.keys()]
    .sort((a, b) => weightOf.get(b)! - weightOf.get(a)! || (a < b ? -1 : a > b ? 1 : 0))
    .slice(0, MAX_PLACEMENT_MODERATORS);
}

/**
 * Fetch the current policy of each moderator from the sources (first verified answer wins; newer
 * answers from later sources replace it). Unreachable or refused → null (its nodes are skipped).
 * Each distinct moderator is fetched once, POLICY_FETCHES_IN_FLIGHT at a time; a placement passes
 * the ones placementModerators chose.
 */
export async function fetchModeratorPolicies(moderators: Iterable<string>, sources: readonly PolicySource[], now: number = Date.now()): Promise<Map<string, PolicyState | null>> {
  const chosen = [...new Set(moderators)];
  const out = new Map<string, PolicyState | null>();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < chosen.length) {
      const m = chosen[next++];
      let held: PolicyState | null = null;
      for (const src of sources) {
        try {
          const b = await src.fetch(m, held);
          if (b) held = advancePolicy(held, b, { moderator: m, now }).state;
        } catch {
          // An unreachable or lying source: the next one may answer.
        }
      }
      out.set(m, held);
    }
  };
  await Promise.all(Array.from({ length: Math.min(POLICY_FETCHES_IN_FLIGHT, chosen.length) }, worker));
  return out;
}

/**
 * The storage nodes an upload of class `cls` may use: fetch the policies of the moderators the
 * nodes list (from `sources`, normally the authorities), keep the nodes that admit the class, and
 * fail with PLACEMENT_TOO_FEW_NODES naming the class when fewer than `need` remain.
 */
export async function selectNodesForClass<N extends WeightedModeratedNode>(
  nodes: readonly N[], cls: string, need: number, sources: readonly PolicySource[], o: { shareBytes?: number; now?: number } = {},
): Promise<N[]> {
  const moderators = placementModerators(nodes);
  const policies = moderators.length ? await fetchModeratorPolicies(moderators, sources, o.now) : new Map<string, PolicyState | null>();
  const ok = nodesAdmitting(nodes, cls, policies, o.shareBytes);
  const chosen = nodes.filter((n) => ok.has(n.fingerprint));
  requireNodesForClass(cls, chosen.length, need, nodes.length);
  return chosen;
}

/**
 * The reader's side of §10.8: the fingerprints of the nodes an upload of class `cls` could use,
 * from the same policies (SPEC.md §9.9: data shares are asked first of the node placement over
 * these gave them). Moderators whose policy cannot be fetched make their nodes count as not
 * admitting, as they did for the uploader.
 */
export async function nodesForClass(nodes: readonly WeightedModeratedNode[], cls: string, sources: readonly PolicySource[], now?: number): Promise<string[]> {
  const moderators = placementModerators(nodes);
  const policies = moderators.length ? await fetchModeratorPolicies(moderators, sources, now) : new Map<string, PolicyState | null>();
  const ok = nodesAdmitting(nodes, cls, policies);
  return nodes.filter((n) => ok.has(n.fingerprint)).map((n) => n.fingerprint);
}
