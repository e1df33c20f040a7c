// The storage node's Prometheus metrics (SPEC.md §9.8.4: storage bytes, errors by code).
import { prom, type Registry } from '../src/ops/metrics';

export class StorageMetrics {
  readonly bytesStored: prom.Gauge;
  readonly shares: prom.Gauge;
  readonly quotaBytes: prom.Gauge;
  readonly requests: prom.Counter<'op' | 'via'>;
  readonly errors: prom.Counter<'code'>;
  readonly cacheLookups: prom.Counter<'result'>;
  readonly gcRemoved: prom.Counter;
  readonly quarantined: prom.Counter;
  readonly directClosed: prom.Counter<'reason'>;

  /** Registers on `registry`, or on a private one (so several stores in one process never clash). */
  constructor(readonly registry: Registry = new prom.Registry()) {
    const registers = [registry];
    this.bytesStored = new prom.Gauge({ name: 'bitcloud_storage_bytes_stored', help: 'Bytes of shares held on disk', registers });
    this.shares = new prom.Gauge({ name: 'bitcloud_storage_shares', help: 'Shares held on disk', registers });
    this.quotaBytes = new prom.Gauge({ name: 'bitcloud_storage_quota_bytes', help: 'Configured storage quota in bytes', registers });
    this.requests = new prom.Counter({ name: 'bitcloud_storage_requests_total', help: 'Storage protocol requests by operation and how they arrived (circuit: a BEGIN_STORAGE stream from a relay; direct: a direct session or one-hop circuit)', labelNames: ['op', 'via'], registers });
    this.errors = new prom.Counter({ name: 'bitcloud_storage_errors_total', help: 'Storage errors by stable code', labelNames: ['code'], registers });
    this.cacheLookups = new prom.Counter({ name: 'bitcloud_storage_cache_lookups_total', help: 'Share cache lookups by result (hit, miss)', labelNames: ['result'], registers });
    this.gcRemoved = new prom.Counter({ name: 'bitcloud_storage_gc_removed_total', help: 'Shares removed because their lease expired', registers });
    this.quarantined = new prom.Counter({ name: 'bitcloud_storage_quarantined_total', help: 'Shares found corrupt on disk and moved to quarantine', registers });
    this.directClosed = new prom.Counter({ name: 'bitcloud_storage_direct_closed_total', help: 'Direct sessions the node closed (SPEC.md §9.13.2), by reason: per_address (past the per-address cap, at accept), idle (no byte either way), request_deadline (a request not received in full in time)', labelNames: ['reason'], registers });
  }
}
