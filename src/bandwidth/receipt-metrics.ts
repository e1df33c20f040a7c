// SPEC.md §8.3–§8.4: what a relay or storage node exposes on /metrics about its receipts.
// Cell counts are plain integers summed from closed segments plus the live counters, copied
// into prom-client only at scrape time (the per-cell path bumps LinkCounter fields only).
import { oncePerRegistry, prom, type Registry } from '../ops/metrics';
import type { SegmentCounts } from './counters';

export class ReceiptMetrics {
  /** The metrics registered in `reg` (made once per registry). */
  static readonly for: (reg: Registry) => ReceiptMetrics = oncePerRegistry((reg) => new ReceiptMetrics(reg));

  /** Counted cells of closed segments (SPEC §8.1), from this node's point of view. */
  cellsSent = 0;
  cellsReceived = 0;
  /** Set by the owner: counted cells of the segments still open, read at scrape time. */
  liveCells: () => { sent: number; received: number } = () => ({ sent: 0, received: 0 });
  countedLinks: () => number = () => 0;
  heldReceipts: () => number = () => 0;

  private readonly countersigned?: prom.Counter<'role'>;
  private readonly disagreements?: prom.Counter<'reason'>;
  private readonly cellErrors?: prom.Counter<'code'>;
  private readonly uploaded?: prom.Counter<'result'>;
  private readonly attempts?: prom.Counter<'outcome'>;
  private readonly proposalsRefused?: prom.Counter<'reason'>;

  constructor(reg?: Registry) {
    if (!reg) return;
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    new prom.Counter({
      name: 'bitcloud_receipt_cells_total', help: 'Circuit cells counted for proof of bandwidth on authenticated node links, by direction',
      labelNames: ['direction'], registers: [reg],
      collect() {
        const live = self.liveCells();
        this.reset();
        this.inc({ direction: 'sent' }, self.cellsSent + live.sent);
        this.inc({ direction: 'received' }, self.cellsReceived + live.received);
      },
    });
    new prom.Gauge({ name: 'bitcloud_receipt_links', help: 'Open links whose cells are counted (both ends authenticated)', registers: [reg], collect() { this.set(self.countedLinks()); } });
    new prom.Gauge({ name: 'bitcloud_receipts_held', help: 'Countersigned receipts not yet delivered to every authority', registers: [reg], collect() { this.set(self.heldReceipts()); } });
    this.countersigned = new prom.Counter({ name: 'bitcloud_receipts_countersigned_total', help: 'Countersigned receipts this node holds, by its role on the link', labelNames: ['role'], registers: [reg] });
    this.disagreements = new prom.Counter({ name: 'bitcloud_receipt_disagreements_total', help: 'Unpaid segments (REJECT sent or received, no answer, bad countersignature), by reason', labelNames: ['reason'], registers: [reg] });
    this.cellErrors = new prom.Counter({ name: 'bitcloud_receipt_cell_errors_total', help: 'RECEIPT_* cells ignored or refused, by error code', labelNames: ['code'], registers: [reg] });
    this.uploaded = new prom.Counter({ name: 'bitcloud_receipts_uploaded_total', help: 'Receipt records settled at an authority, by result (accepted, replayed, refused, expired)', labelNames: ['result'], registers: [reg] });
    this.proposalsRefused = new prom.Counter({ name: 'bitcloud_receipt_proposals_refused_total', help: 'RECEIPT_PROPOSE refused before any signature work (SPEC §8.3 step 13), by reason (empty, unlisted_peers, unlisted_address, peer_receipts)', labelNames: ['reason'], registers: [reg] });
    this.attempts = new prom.Counter({ name: 'bitcloud_receipt_upload_attempts_total', help: 'Receipt upload requests, by outcome (answered, http_5xx, rate_limited, bad_answer, transport)', labelNames: ['outcome'], registers: [reg] });
  }

  /** A closed segment, oriented like a receipt body; `initiator`: this node's role on the link. */
  segment(s: SegmentCounts, initiator: boolean): void {
    this.cellsSent += initiator ? s.cellsI2R : s.cellsR2I;
    this.cellsReceived += initiator ? s.cellsR2I : s.cellsI2R;
  }
  receipt(role: 'initiator' | 'responder'): void { this.countersigned?.inc({ role }); }
  disagreement(reason: string): void { this.disagreements?.inc({ reason }); }
  cellError(code: string): void { this.cellErrors?.inc({ code }); }
  upload(result: 'accepted' | 'replayed' | 'refused' | 'expired', n = 1): void { if (n > 0) this.uploaded?.inc({ result }, n); }
  proposalRefused(reason: 'empty' | 'unlisted_peers' | 'unlisted_address' | 'peer_receipts'): void { this.proposalsRefused?.inc({ reason }); }
  attempt(outcome: 'answered' | 'http_5xx' | 'rate_limited' | 'bad_answer' | 'transport'): void { this.attempts?.inc({ outcome }); }
}
