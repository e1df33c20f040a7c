// The authority's Prometheus metrics (all names start with bitcloud_dirauth_).
import { prom, type Registry } from '../src/ops/metrics';

export interface AuthorityMetrics {
  uploads: prom.Counter<'result'>;
  reachability: prom.Counter<'result'>;
  votes: prom.Counter<'result'>;
  signatures: prom.Counter<'result'>;
  computed: prom.Counter;
  published: prom.Counter;
  http: prom.Counter<'route' | 'status'>;
  errors: prom.Counter<'code'>;
  consensusFetches: prom.Counter<'fetcher'>;
  rewardFetches: prom.Counter<'fetcher'>;
  identityProofs: prom.Counter<'result'>;
  probes: prom.Counter<'result'>;
  probeSeconds: prom.Histogram<'result'>;
  secondBodyRefused: prom.Counter<'document'>;
  voteRelaysLeftOut: prom.Counter;
  voteRelaysOverAddressLimit: prom.Counter;
  hsDescriptorsEvicted: prom.Counter;
}

export interface AuthorityGaugeSource {
  relaysKnown(): number;
  relaysRunning(): number;
  consensus(): { validAfter: number; relays: number; signatures: number } | null;
}

export function createAuthorityMetrics(reg: Registry, src: AuthorityGaugeSource): AuthorityMetrics {
  const m: AuthorityMetrics = {
    uploads: new prom.Counter({ name: 'bitcloud_dirauth_descriptor_uploads_total', help: 'Descriptor uploads by result (new, updated, unchanged, or the refusal code)', labelNames: ['result'], registers: [reg] }),
    reachability: new prom.Counter({ name: 'bitcloud_dirauth_reachability_tests_total', help: 'Reachability tests by result (ok or the link error code)', labelNames: ['result'], registers: [reg] }),
    votes: new prom.Counter({ name: 'bitcloud_dirauth_votes_total', help: 'Votes made (own) or fetched (fetched, or the refusal code)', labelNames: ['result'], registers: [reg] }),
    signatures: new prom.Counter({ name: 'bitcloud_dirauth_consensus_signatures_collected_total', help: 'Detached consensus signatures by result (added, digest_mismatch, bad)', labelNames: ['result'], registers: [reg] }),
    computed: new prom.Counter({ name: 'bitcloud_dirauth_consensus_computed_total', help: 'Consensuses computed and signed', registers: [reg] }),
    published: new prom.Counter({ name: 'bitcloud_dirauth_consensus_published_total', help: 'Consensuses published with a majority of signatures', registers: [reg] }),
    http: new prom.Counter({ name: 'bitcloud_dirauth_http_requests_total', help: 'HTTP requests by route and status', labelNames: ['route', 'status'], registers: [reg] }),
    errors: new prom.Counter({ name: 'bitcloud_dirauth_errors_total', help: 'Errors by code', labelNames: ['code'], registers: [reg] }),
    consensusFetches: new prom.Counter({ name: 'bitcloud_dirauth_consensus_fetches_total', help: 'Direct consensus fetches by declared fetcher (client, mirror, node, other; SPEC.md §6.10.1)', labelNames: ['fetcher'], registers: [reg] }),
    rewardFetches: new prom.Counter({ name: 'bitcloud_dirauth_reward_fetches_total', help: 'Direct reward-chain fetches by declared fetcher (client, mirror, node, other; SPEC.md §6.10.1)', labelNames: ['fetcher'], registers: [reg] }),
    probes: new prom.Counter({ name: 'bitcloud_dirauth_capacity_probes_total', help: 'Capacity probes of relays by result (ok, the error code, or skipped: its slot was skipped; SPEC.md §8.12)', labelNames: ['result'], registers: [reg] }),
    probeSeconds: new prom.Histogram({ name: 'bitcloud_dirauth_capacity_probe_seconds', help: 'Duration of capacity probes (link, circuit and burst) by result (ok or the error code; SPEC.md §8.12)', labelNames: ['result'], buckets: [0.5, 1, 2, 3, 5, 10, 15, 20, 30, 60], registers: [reg] }),
    secondBodyRefused: new prom.Counter({ name: 'bitcloud_dirauth_second_body_refused_total', help: 'A second, different vote or consensus body for a period already signed (before a restart) left unsigned, by document (vote, consensus; SPEC.md §6.5, §6.8)', labelNames: ['document'], registers: [reg] }),
    voteRelaysLeftOut: new prom.Counter({ name: 'bitcloud_dirauth_vote_relays_left_out_total', help: 'Reachable relays left out of the own vote because it would exceed 100 000 entries or the vote byte limit (lowest measured first; SPEC.md §6.5 Bounds)', registers: [reg] }),
    voteRelaysOverAddressLimit: new prom.Counter({ name: 'bitcloud_dirauth_vote_relays_over_address_limit_total', help: 'Reachable relays left out of the own vote because more than maxRelaysPerAddress relays share their IPv4 address (the lowest measured first; SPEC.md §6.5)', registers: [reg] }),
    hsDescriptorsEvicted: new prom.Counter({ name: 'bitcloud_dirauth_hs_descriptors_evicted_total', help: 'Hidden descriptors evicted to make room for a new one within the store\'s 64 MiB: oldest received first, those of an ended period (grace hour) first, then of the new one\'s period when it holds over half the store, else of the other current period (SPEC.md §9.21.3)', registers: [reg] }),
    identityProofs: new prom.Counter({ name: 'bitcloud_dirauth_identity_proofs_total', help: 'Identity proof checks of uploaded descriptors by result (ok, the IDENTITY_POW_* code, or evicted: a waiting proof that made way for one from a smaller address group and was answered IDENTITY_POW_BUSY; SPEC.md §6.4.1)', labelNames: ['result'], registers: [reg] }),
  };
  new prom.Gauge({ name: 'bitcloud_dirauth_relays_known', help: 'Relays with a current descriptor', registers: [reg], collect() { this.set(src.relaysKnown()); } });
  new prom.Gauge({ name: 'bitcloud_dirauth_relays_running', help: 'Relays reachable at their last test', registers: [reg], collect() { this.set(src.relaysRunning()); } });
  new prom.Gauge({ name: 'bitcloud_dirauth_consensus_age_seconds', help: 'Seconds since valid-after of the published consensus (-1: none)', registers: [reg], collect() { const c = src.consensus(); this.set(c ? (Date.now() - c.validAfter) / 1000 : -1); } });
  new prom.Gauge({ name: 'bitcloud_dirauth_consensus_relays', help: 'Relays listed in the published consensus', registers: [reg], collect() { this.set(src.consensus()?.relays ?? 0); } });
  new prom.Gauge({ name: 'bitcloud_dirauth_consensus_signatures', help: 'Authority signatures on the published consensus', registers: [reg], collect() { this.set(src.consensus()?.signatures ?? 0); } });
  return m;
}
