// SPEC.md §8.5.2 "Owed state on an authority": what the pair rule owes each pair, carried across
// epochs in <dataDir>/pair-owed.bin, written atomically (temp, fsync, rename; src/ops/fsutil). The
// file holds the state entering and leaving the last epoch measured, so that measuring that epoch
// again after a restart starts from the same state (nothing is paid or owed twice). Layout (all
// integers big-endian):
//   "BCOWED01"                       8 bytes
//   epoch                            u64
//   n_entering, n_leaving            u32, u32
//   n_entering + n_leaving records:  fp_low[32] fp_high[32] owed_low f64 owed_high f64
//                                    (> 0 owed to that relay; < 0 its banked allowance)
//                                    (fp_low < fp_high bytewise, ascending, each section)
//   SHA-256 of everything above      32 bytes
// A file that does not decode is set aside (pair-owed.bin.rejected) and the authority starts with
// nothing owed: the state only ever lets honest relays be paid late, never lifts a pair above its
// allowance, so losing it costs honest relays the late payment, not the network its bounds.
import fs from 'node:fs';
import path from 'node:path';
import { err, errorCode } from '../src/errors';
import type { Logger } from '../src/ops/log';
import { sha256 } from '../src/crypto/primitives';
import { writeFileAtomicSync } from '../src/ops/fsutil';
import type { OwedState } from '../src/bandwidth/measure';

export const OWED_FILE = 'pair-owed.bin';
const MAGIC = Buffer.from('BCOWED01', 'latin1');
const RECORD = 32 + 32 + 8 + 8;
const HEADER = 8 + 8 + 4 + 4;

export interface OwedSnapshot {
  /** The epoch last measured. */
  epoch: number;
  /** The state its measurement started from. */
  entering: OwedState;
  /** The state it left (the input of the next epoch). */
  leaving: OwedState;
}

function encodeSection(s: OwedState): Buffer[] {
  const out: Buffer[] = [];
  for (const key of [...s.keys()].sort()) {
    const [lo, hi] = key.split(':');
    const v = s.get(key)!;
    const r = Buffer.alloc(RECORD);
    Buffer.from(lo, 'hex').copy(r, 0);
    Buffer.from(hi, 'hex').copy(r, 32);
    r.writeDoubleBE(v[0], 64);
    r.writeDoubleBE(v[1], 72);
    out.push(r);
  }
  return out;
}

export function encodeOwed(s: OwedSnapshot): Buffer {
  const h = Buffer.alloc(HEADER);
  MAGIC.copy(h, 0);
  h.writeBigUInt64BE(BigInt(s.epoch), 8);
  h.writeUInt32BE(s.entering.size, 16);
  h.writeUInt32BE(s.leaving.size, 20);
  const body = Buffer.concat([h, ...encodeSection(s.entering), ...encodeSection(s.leaving)]);
  return Buffer.concat([body, sha256(body)]);
}

/** Strict decode; IO_STATE_UNREADABLE on anything that is not a file `encodeOwed` wrote. */
export function decodeOwed(buf: Buffer): OwedSnapshot {
  const bad = (why: string): never => { throw err('IO_STATE_UNREADABLE', `pair owed state: ${why}`); };
  if (buf.length < HEADER + 32 || !buf.subarray(0, 8).equals(MAGIC)) bad('not a pair owed state file');
  const body = buf.subarray(0, buf.length - 32);
  if (!sha256(body).equals(buf.subarray(buf.length - 32))) bad('checksum does not match');
  const epoch = buf.readBigUInt64BE(8);
  if (epoch > BigInt(Number.MAX_SAFE_INTEGER)) bad('epoch out of range');
  const ne = buf.readUInt32BE(16), nl = buf.readUInt32BE(20);
  if (body.length !== HEADER + (ne + nl) * RECORD) bad('length does not match the counts');
  let off = HEADER;
  const section = (count: number): OwedState => {
    const s: OwedState = new Map();
    let prev = '';
    for (let i = 0; i < count; i++, off += RECORD) {
      const lo = buf.subarray(off, off + 32).toString('hex'), hi = buf.subarray(off + 32, off + 64).toString('hex');
      const a = buf.readDoubleBE(off + 64), b = buf.readDoubleBE(off + 72);
      const key = `${lo}:${hi}`;
      if (!(lo < hi) || !(key > prev)) bad('pairs out of order');
      // A negative value is allowance banked by the pair (SPEC §8.5.2, bankEpochs > 0).
      if (!(Number.isFinite(a) && Number.isFinite(b))) bad('owed cells out of range');
      s.set(key, [a, b]);
      prev = key;
    }
    return s;
  };
  const entering = section(ne);
  const leaving = section(nl);
  return { epoch: Number(epoch), entering, leaving };
}

export class OwedStore {
  readonly file: string;
  constructor(dataDir: string, private readonly log: Logger) {
    this.file = path.join(dataDir, OWED_FILE);
  }

  /** The stored snapshot; null when there is none or it does not decode (then set aside). */
  load(): OwedSnapshot | null {
    let raw: Buffer;
    try { raw = fs.readFileSync(this.file); } catch { return null; }
    try {
      return decodeOwed(raw);
    } catch (e) {
      this.log.error({ code: errorCode(e), err: (e as Error).message }, 'pair owed state not usable; set aside, starting with nothing owed');
      try { fs.renameSync(this.file, `${this.file}.rejected`); } catch { /* leave it */ }
      return null;
    }
  }

  /** Written before the vote that carries the measurement goes out. */
  save(s: OwedSnapshot): void {
    try {
      writeFileAtomicSync(this.file, encodeOwed(s), 0o600);
    } catch (e) {
      this.log.error({ err: (e as Error).message }, 'saving the pair owed state failed');
    }
  }
}
