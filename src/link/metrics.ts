// Link metrics (SPEC.md §1.7, §11.6: cells, handshakes, errors by code). One set per registry.
import { Counter, Gauge, Registry } from 'prom-client';

export type LinkRole = 'initiator' | 'responder';

export interface LinkMetrics {
  /** bitcloud_link_cells_total{direction="in"|"out"} */
  cells: Counter<'direction'>;
  /** bitcloud_link_bytes_total{direction="in"|"out"} (TLS plaintext bytes: cells) */
  bytes: Counter<'direction'>;
  /** bitcloud_link_opened_total{role}: links whose handshake completed. */
  opened: Counter<'role'>;
  /** bitcloud_link_closed_total{role}: opened links that have since closed, for any reason. */
  closed: Counter<'role'>;
  /** bitcloud_link_open{role}: links open now. */
  open: Gauge<'role'>;
  /** bitcloud_link_errors_total{code}: every link closed by an error, handshake or later. */
  errors: Counter<'code'>;
  /** bitcloud_link_handshake_failures_total{code}: links that never opened (TLS, auth, versions, timeout). */
  handshakeFailures: Counter<'code'>;
  /**
   * bitcloud_link_cells_dropped_total{reason}: cells read on an open link and not handed on.
   * `create_after_end`: a CREATE2 held unread when the peer's end came (SPEC.md §1.7).
   */
  cellsDropped: Counter<'reason'>;
  // Hot path (per read and per write): plain integers, copied into `cells` / `bytes` only when
  // the registry is scraped (a prom-client inc() per chunk is not free).
  cellsIn: HotCount;
  cellsOut: HotCount;
  bytesIn: HotCount;
  bytesOut: HotCount;
}

/** A running total bumped on the hot path; a counter's collect() reads it at scrape time. */
export class HotCount {
  value = 0;
  inc(n = 1): void { this.value += n; }
}

const perRegistry = new WeakMap<Registry, LinkMetrics>();

/** The link metrics registered in `registry` (made on first call; later calls return the same set). */
export function createLinkMetrics(registry: Registry): LinkMetrics {
  const had = perRegistry.get(registry);
  if (had) return had;
  const registers = [registry];
  const cellsIn = new HotCount();
  const cellsOut = new HotCount();
  const bytesIn = new HotCount();
  const bytesOut = new HotCount();
  const cells = new Counter({
    name: 'bitcloud_link_cells_total', help: 'Cells sent and received on links', labelNames: ['direction'] as const, registers,
    collect() { this.reset(); this.inc({ direction: 'in' }, cellsIn.value); this.inc({ direction: 'out' }, cellsOut.value); },
  });
  const bytes = new Counter({
    name: 'bitcloud_link_bytes_total', help: 'Cell bytes sent and received on links', labelNames: ['direction'] as const, registers,
    collect() { this.reset(); this.inc({ direction: 'in' }, bytesIn.value); this.inc({ direction: 'out' }, bytesOut.value); },
  });
  const m: LinkMetrics = {
    cells,
    bytes,
    opened: new Counter({ name: 'bitcloud_link_opened_total', help: 'Links whose handshake completed', labelNames: ['role'] as const, registers }),
    closed: new Counter({ name: 'bitcloud_link_closed_total', help: 'Opened links that closed', labelNames: ['role'] as const, registers }),
    open: new Gauge({ name: 'bitcloud_link_open', help: 'Links open now', labelNames: ['role'] as const, registers }),
    errors: new Counter({ name: 'bitcloud_link_errors_total', help: 'Links closed by an error, by error code', labelNames: ['code'] as const, registers }),
    handshakeFailures: new Counter({ name: 'bitcloud_link_handshake_failures_total', help: 'Link handshakes that failed, by error code', labelNames: ['code'] as const, registers }),
    cellsDropped: new Counter({ name: 'bitcloud_link_cells_dropped_total', help: 'Cells read on open links and dropped unhandled, by reason', labelNames: ['reason'] as const, registers }),
    cellsIn,
    cellsOut,
    bytesIn,
    bytesOut,
  };
  perRegistry.set(registry, m);
  return m;
}

let unregistered: LinkMetrics | undefined;
/** Metrics that go nowhere, for links made without a registry (library use, tests). */
export function discardLinkMetrics(): LinkMetrics {
  unregistered ??= createLinkMetrics(new Registry());
  return unregistered;
}

/** Read one labelled value of a counter (tests, status pages). */
export async function counterValue(c: Counter<string> | Gauge<string>, labels: Record<string, string>): Promise<number> {
  const got = await c.get();
  const row = got.values.find((v) => Object.entries(labels).every(([k, val]) => (v.labels as Record<string, unknown>)[k] === val));
  return row?.value ?? 0;
}
