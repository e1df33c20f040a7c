// Metrics of the circuit engine (relay side and circuit endpoints), SPEC.md §7b.10.
// Per-cell counts are plain integers bumped on the hot path and copied into prom-client
// only when /metrics is scraped; everything else uses prom-client counters directly.
import { oncePerRegistry, prom, type Registry } from '../ops/metrics';

export class CircuitMetrics {
  /** The metrics registered in `reg` (made on first call; a registry can hold them once). */
  static readonly for: (reg: Registry) => CircuitMetrics = oncePerRegistry((reg) => new CircuitMetrics(reg));

  /** Hot path counters (cells forwarded or delivered, by direction). */
  cellsOutbound = 0;
  cellsInbound = 0;
  /** Set by the owner so the gauges read live values at scrape time. */
  openCircuits: () => number = () => 0;
  openStreams: () => number = () => 0;
  queuedCells: () => number = () => 0;

  private readonly created?: prom.Counter<'crypto'>;
  private readonly destroyed?: prom.Counter<'reason'>;
  private readonly streams?: prom.Counter<'kind'>;
  private readonly exits?: prom.Counter<'result'>;
  private readonly errors?: prom.Counter<'code'>;
  private readonly refusals?: prom.Counter<'kind'>;
  private readonly oom?: prom.Counter;

  constructor(reg?: Registry) {
    if (!reg) return;
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    new prom.Counter({
      name: 'bitcloud_cells_relayed_total', help: 'Relay cells forwarded or delivered by this node, by direction',
      labelNames: ['direction'], registers: [reg],
      collect() {
        this.reset();
        this.inc({ direction: 'outbound' }, self.cellsOutbound);
        this.inc({ direction: 'inbound' }, self.cellsInbound);
      },
    });
    new prom.Gauge({ name: 'bitcloud_circuits_open', help: 'Circuits currently open through this node', registers: [reg], collect() { this.set(self.openCircuits()); } });
    new prom.Gauge({ name: 'bitcloud_streams_open', help: 'Streams currently open at this node', registers: [reg], collect() { this.set(self.openStreams()); } });
    new prom.Gauge({ name: 'bitcloud_queued_cells', help: 'Cells queued for congested links', registers: [reg], collect() { this.set(self.queuedCells()); } });
    this.created = new prom.Counter({ name: 'bitcloud_circuits_created_total', help: 'Circuits created (CREATE2 answered), by the relay crypto negotiated (tor1, cgo)', labelNames: ['crypto'], registers: [reg] });
    this.destroyed = new prom.Counter({ name: 'bitcloud_circuits_destroyed_total', help: 'Circuits destroyed, by DESTROY reason', labelNames: ['reason'], registers: [reg] });
    this.streams = new prom.Counter({ name: 'bitcloud_streams_opened_total', help: 'Streams opened at this node, by kind', labelNames: ['kind'], registers: [reg] });
    this.exits = new prom.Counter({ name: 'bitcloud_exit_connects_total', help: 'Exit connection attempts, by result', labelNames: ['result'], registers: [reg] });
    this.errors = new prom.Counter({ name: 'bitcloud_circuit_errors_total', help: 'Protocol violations and failures, by error code', labelNames: ['code'], registers: [reg] });
    this.refusals = new prom.Counter({ name: 'bitcloud_dos_refusals_total', help: 'Requests refused by resource limits, by kind', labelNames: ['kind'], registers: [reg] });
    this.oom = new prom.Counter({ name: 'bitcloud_oom_circuit_kills_total', help: 'Circuits killed by the queued-cell memory cap', registers: [reg] });
  }

  circuitCreated(crypto: string = 'tor1'): void { this.created?.inc({ crypto }); }
  circuitDestroyed(reason: string): void { this.destroyed?.inc({ reason }); }
  streamOpened(kind: string): void { this.streams?.inc({ kind }); }
  exitConnect(result: string): void { this.exits?.inc({ result }); }
  error(code: string): void { this.errors?.inc({ code }); }
  refused(kind: string): void { this.refusals?.inc({ kind }); }
  oomKill(): void { this.oom?.inc(); }
}
