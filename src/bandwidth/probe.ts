// SPEC.md §8.12: the capacity probe. A measurer (each authority) builds a one-hop circuit to a
// relay over an anonymous link and keeps a bounded number of PROBE_ECHO cells in flight, each with
// a fresh random body; the relay, as the circuit's last hop, sends each body back. The measurer
// counts only the echoes whose body is byte-identical to one it sent and has not yet seen answered,
// within its own time and byte bounds: the figure is what the measurer itself saw come back, so a
// relay cannot make it larger than its real capacity (it cannot echo a body before it received it,
// and cannot produce a valid cell on the circuit without doing the circuit's crypto).
//
// ProbeAccount is the pure accounting (unit-tested); runProbe drives it over a real link.
import { err, errorCode, BitcloudError } from '../errors';
import { constantTimeEqual, randomFill } from '../crypto/primitives';
import { CELL_LEN } from '../wire/cell';
import { PROBE_ECHO_LEN, RelayCommand } from '../wire/relay-msg';
import { connectLink } from '../link';
import { ClientCircuit, ClientLink, type HopTarget } from '../client/client-circuit';

/** SPEC.md §8.12: a PROBE_ECHO body is exactly this long: a u64 sequence number, then random bytes. */
export const PROBE_BODY_LEN = PROBE_ECHO_LEN; // 498

export interface ProbeFigures {
  /** Echo cells sent. */
  sent: number;
  /** Echoes that matched a body sent and not yet answered: the only ones credited. */
  verified: number;
  /** Bytes credited: verified × 514 (one whole cell on the relay's outgoing link each). */
  bytes: number;
  /** Replies refused (malformed or not matching), with the code of the first one. */
  refused: number;
}

/**
 * The measurer's books for one probe. `next()` makes the body of the next echo cell and remembers
 * it; `onEcho(body)` credits a reply that matches a remembered body exactly once, and throws
 * PROBE_REPLY_MALFORMED (wrong length, unknown or repeated sequence number) or PROBE_REPLY_MISMATCH
 * (the right sequence number with other bytes: forged or corrupted) for anything else, crediting
 * nothing. Memory is bounded by the bodies in flight.
 */
export class ProbeAccount {
  private seq = 0;
  private readonly outstanding = new Map<number, Buffer>();
  private f: ProbeFigures = { sent: 0, verified: 0, bytes: 0, refused: 0 };
  firstRefusal: string | null = null;

  get figures(): Readonly<ProbeFigures> { return this.f; }
  get inFlight(): number { return this.outstanding.size; }

  next(): Buffer {
    const body = Buffer.allocUnsafe(PROBE_BODY_LEN);
    randomFill(body);
    const s = this.seq++;
    body.writeUIntBE(s, 2, 6); // u64 with the top two bytes zero (sequence numbers below 2^48)
    body.writeUInt16BE(0, 0);
    this.outstanding.set(s, body);
    this.f.sent++;
    return body;
  }

  onEcho(body: Uint8Array): void {
    try {
      if (body.length !== PROBE_BODY_LEN) throw err('PROBE_REPLY_MALFORMED', `PROBE_ECHO reply of ${body.length} bytes, expected ${PROBE_BODY_LEN}`);
      const b = Buffer.from(body.buffer, body.byteOffset, body.length);
      const s = b.readUInt16BE(0) === 0 ? b.readUIntBE(2, 6) : -1;
      const want = s >= 0 ? this.outstanding.get(s) : undefined;
      if (!want) throw err('PROBE_REPLY_MALFORMED', 'PROBE_ECHO reply for a sequence number not in flight (never sent, or answered already)');
      if (!constantTimeEqual(want, b)) throw err('PROBE_REPLY_MISMATCH', `PROBE_ECHO reply ${s} differs from the body sent`);
      this.outstanding.delete(s);
      this.f.verified++;
      this.f.bytes += CELL_LEN;
    } catch (e) {
      this.f.refused++;
      this.firstRefusal ??= errorCode(e);
      throw e;
    }
  }
}

export interface ProbeOptions {
  /** Length of the burst, ms: echoes that arrive later are not credited. */
  durationMs: number;
  /** Most bytes credited (the burst stops sending once sent cells would exceed it). */
  maxBytes: number;
  /** Echo cells kept in flight. */
  inFlight: number;
  /** Link handshake and CREATE2 bound, ms. */
  connectTimeoutMs?: number;
  now?: () => number;
  /** Filled in as the probe goes (for the measurer's log, SPEC.md §8.12): where it is, and how long each step took. */
  trace?: ProbeTrace;
}

/** How far a probe got: `link` (TLS link handshake), `circuit` (CREATE2), `burst` (the echo cells). */
export interface ProbeTrace {
  phase?: 'link' | 'circuit' | 'burst';
  /** ms for the link handshake. */
  linkMs?: number;
  /** ms for CREATE2 / CREATED2. */
  circuitMs?: number;
}

export interface ProbeResult extends ProbeFigures {
  /** Milliseconds from the first cell sent to the end of the burst (or the last echo, when the byte bound ended it). */
  ms: number;
  /** floor(bytes × 1000 / ms): the relay's measured capacity, bytes/s, one direction (its output). */
  bytesPerSecond: number;
}

/** The figure of a finished probe. */
export function probeRate(bytes: number, ms: number): number {
  return ms > 0 ? Math.floor(bytes * 1000 / ms) : 0;
}

/**
 * Probe one relay (SPEC.md §8.12). Resolves with the figures of the burst; rejects with a typed
 * error when the link or the circuit cannot be made (LINK_*, CIRCUIT_*), the circuit closes during
 * the burst, or the relay answers with anything but the bodies sent (PROBE_REPLY_MALFORMED,
 * PROBE_REPLY_MISMATCH): a relay that answers wrongly is credited nothing for the probe.
 */
export async function runProbe(target: HopTarget, o: ProbeOptions): Promise<ProbeResult> {
  if (!(o.durationMs > 0) || !(o.maxBytes >= CELL_LEN) || !Number.isInteger(o.inFlight) || o.inFlight < 1) {
    throw err('PROBE_BAD_PARAMS', 'probe needs durationMs > 0, maxBytes ≥ one cell and inFlight ≥ 1');
  }
  const now = o.now ?? Date.now;
  const trace = o.trace ?? {};
  trace.phase = 'link';
  const tLink = now();
  const ch = await connectLink({ host: target.address, port: target.orPort, expectedIdentity: target.identity, timeoutMs: o.connectTimeoutMs ?? 10_000 });
  const link = new ClientLink(ch);
  const circ = ClientCircuit.allocate(link);
  trace.linkMs = now() - tLink;
  trace.phase = 'circuit';
  try {
    const tCirc = now();
    await withTimeout(circ.create(target), o.connectTimeoutMs ?? 10_000);
    trace.circuitMs = now() - tCirc;
    trace.phase = 'burst';
    const acct = new ProbeAccount();
    const maxCells = Math.floor(o.maxBytes / CELL_LEN);
    const t0 = now();
    const end = t0 + o.durationMs;
    let last = t0;
    return await new Promise<ProbeResult>((resolve, reject) => {
      let done = false;
      const finish = (e?: BitcloudError): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (e) { reject(e); return; }
        const ms = Math.max(1, (acct.figures.sent >= maxCells ? last : Math.min(now(), end)) - t0);
        resolve({ ...acct.figures, ms, bytesPerSecond: probeRate(acct.figures.bytes, ms) });
      };
      const timer = setTimeout(() => finish(), o.durationMs);
      const pump = (): void => {
        while (!done && acct.inFlight < o.inFlight && acct.figures.sent < maxCells && now() < end) circ.sendControl(RelayCommand.PROBE_ECHO, acct.next());
      };
      circ.onControl = (command, data) => {
        if (done) return;
        if (command !== RelayCommand.PROBE_ECHO) { finish(err('PROBE_REPLY_MALFORMED', `relay answered a probe with relay command ${command}`)); return; }
        const t = now();
        if (t > end) { finish(); return; } // after the burst: not credited
        try { acct.onEcho(data); } catch (e) { finish(e as BitcloudError); return; }
        last = t;
        if (acct.figures.verified >= maxCells) { finish(); return; }
        pump();
      };
      circ.once('close', (e: BitcloudError) => finish(e));
      pump();
    });
  } finally {
    circ.destroy();
    ch.close('probe done');
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<T>((_, reject) => { t = setTimeout(() => reject(err('PROBE_TIMEOUT', `no circuit to the relay within ${ms} ms`)), ms); }),
  ]);
}
