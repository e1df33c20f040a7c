// SPEC.md §9.21.7: a hidden storage node's pseudonym registration — its layout, its sealing to
// each authority, every refusal an authority makes (the attacks: a registration signed by another
// key, replayed for another period, a pseudonym claimed by two identities), the receipt check that
// counts a registered pseudonym as its node (§8.4 check 4), and the authority's store surviving a
// restart.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { ed25519FromSeed, ed25519Generate, sealToEd25519, type Ed25519KeyPair } from '../../src/crypto/primitives';
import {
  PSEUDONYM_ENTRY_LEN, PSEUDONYM_MAX_ENTRIES, PSEUDONYM_REGISTRATION_LEN, PSEUDONYM_SEALED_LEN, decodePseudonymRegistration,
  decodePseudonymUpload, encodePseudonymRegistration, encodePseudonymUpload,
} from '../../src/wire/pseudonym';
import {
  MAX_PSEUDONYMS_PER_IDENTITY, PseudonymRegistry, makePseudonymRegistration, openPseudonymUpload, sealPseudonymUpload,
  type RegistryContext,
} from '../../src/hidden/pseudonym';
import { countersign, signReceipt, type Receipt } from '../../src/bandwidth/receipt';
import { ReceiptVerifier, periodicUploadWindow } from '../../src/bandwidth/verify';
import { PseudonymStore, PSEUDONYMS_FILE } from '../../directory/pseudonyms';
import { silentLogger } from '../../src/ops/log';
import { codeOf, expectCode, onlyBitcloudErrors } from '../helpers/errors';

const key = (i: number) => ed25519FromSeed(Buffer.alloc(32, i));
const NODE = key(1);        // the hidden node's identity
const OTHER = key(2);       // another hidden node's identity
const GUARD = key(3);       // a listed relay (the node's guard)
const AUTH = [key(10), key(11), key(12)]; // authorities' signing keys
const P = key(20);          // the node's pseudonym of period N
const N = 20_000;
const hex = (k: Ed25519KeyPair) => k.publicKey.toString('hex');

const ctx = (over: Partial<RegistryContext> = {}): RegistryContext => ({
  period: N,
  isHiddenNode: (id) => id === hex(NODE) || id === hex(OTHER),
  isListedRelay: (k) => k === hex(GUARD),
  ...over,
});
/** What an authority with signing key `a` does with an upload: open, then judge. */
const judge = (reg: PseudonymRegistry, body: Buffer, a = AUTH[0], c = ctx()) => reg.register(openPseudonymUpload(body, a), c);
const upload = (identity = NODE, p = P, period = N) => sealPseudonymUpload(makePseudonymRegistration(identity, p, period), AUTH.map((a) => a.publicKey));

describe('pseudonym registration layout (SPEC.md §9.21.7)', () => {
  it('is period u64 | identity | P | two signatures: 200 bytes; an upload is count u8 | count × (recipient | sealed), 280 bytes an entry', () => {
    const r = makePseudonymRegistration(NODE, P, N);
    const bytes = encodePseudonymRegistration(r);
    expect(bytes.length).toBe(PSEUDONYM_REGISTRATION_LEN);
    expect(bytes.readBigUInt64BE(0)).toBe(BigInt(N));
    expect(bytes.subarray(8, 40).equals(NODE.publicKey)).toBe(true);
    expect(bytes.subarray(40, 72).equals(P.publicKey)).toBe(true);
    const back = decodePseudonymRegistration(bytes);
    expect(back.period).toBe(N);
    expect(back.identity.equals(NODE.publicKey) && back.pseudonym.equals(P.publicKey)).toBe(true);
    const up = upload();
    expect(PSEUDONYM_SEALED_LEN).toBe(248);
    expect(PSEUDONYM_ENTRY_LEN).toBe(280);
    expect(up.length).toBe(1 + 3 * PSEUDONYM_ENTRY_LEN);
    expect(up[0]).toBe(3);
    expect(decodePseudonymUpload(up).map((e) => e.recipient.toString('hex'))).toEqual(AUTH.map(hex));
  });

  it('refuses a wrong length, a count of 0 or above 16, trailing bytes, and a pseudonym equal to the identity: HIDDEN_PSEUDONYM_MALFORMED', () => {
    const bytes = encodePseudonymRegistration(makePseudonymRegistration(NODE, P, N));
    expect(codeOf(() => decodePseudonymRegistration(bytes.subarray(1)))).toBe('HIDDEN_PSEUDONYM_MALFORMED');
    expect(codeOf(() => decodePseudonymRegistration(Buffer.concat([bytes, Buffer.alloc(1)])))).toBe('HIDDEN_PSEUDONYM_MALFORMED');
    const same = Buffer.from(bytes);
    P.publicKey.copy(same, 8); // identity := P
    expect(codeOf(() => decodePseudonymRegistration(same))).toBe('HIDDEN_PSEUDONYM_MALFORMED');
    expect(codeOf(() => makePseudonymRegistration(NODE, NODE, N))).toBe('HIDDEN_PSEUDONYM_MALFORMED');
    const up = upload();
    expect(codeOf(() => decodePseudonymUpload(Buffer.concat([Buffer.from([0]), up.subarray(1)])))).toBe('HIDDEN_PSEUDONYM_MALFORMED');
    expect(codeOf(() => decodePseudonymUpload(Buffer.concat([Buffer.from([PSEUDONYM_MAX_ENTRIES + 1]), up.subarray(1)])))).toBe('HIDDEN_PSEUDONYM_MALFORMED');
    expect(codeOf(() => decodePseudonymUpload(Buffer.concat([up, Buffer.alloc(1)])))).toBe('HIDDEN_PSEUDONYM_MALFORMED');
    expect(codeOf(() => decodePseudonymUpload(up.subarray(0, up.length - 1)))).toBe('HIDDEN_PSEUDONYM_MALFORMED');
    expect(codeOf(() => encodePseudonymUpload([]))).toBe('HIDDEN_PSEUDONYM_MALFORMED');
  });

  it('random bytes decode or throw a typed error, never anything else', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 700 }), (b) => onlyBitcloudErrors(() => decodePseudonymUpload(b)) && onlyBitcloudErrors(() => decodePseudonymRegistration(b))));
    fc.assert(fc.property(fc.uint8Array({ minLength: PSEUDONYM_REGISTRATION_LEN, maxLength: PSEUDONYM_REGISTRATION_LEN }), (b) => onlyBitcloudErrors(() => decodePseudonymRegistration(b))));
  });
});

describe('sealing to each authority (SPEC.md §9.21.7)', () => {
  it('each authority opens the entry sealed to its signing key; the bytes a mirror passes on name neither the identity nor P', () => {
    const up = upload();
    for (const a of AUTH) {
      const r = openPseudonymUpload(up, a);
      expect(r.identity.equals(NODE.publicKey) && r.pseudonym.equals(P.publicKey) && r.period === N).toBe(true);
    }
    // What the relay mirror sees: no identity, no pseudonym, in any position.
    expect(up.includes(NODE.publicKey)).toBe(false);
    expect(up.includes(P.publicKey)).toBe(false);
    // Sealing is randomized: two uploads of one registration share no sealed byte run.
    expect(upload().subarray(33, 33 + 248).equals(up.subarray(33, 33 + 248))).toBe(false);
  });

  it('an upload with no entry for this authority, or an entry that does not open, is HIDDEN_PSEUDONYM_UNSEALED', () => {
    const up = upload();
    const stranger = ed25519Generate();
    expect(codeOf(() => openPseudonymUpload(up, stranger))).toBe('HIDDEN_PSEUDONYM_UNSEALED');
    // An entry addressed to authority 0 but sealed to authority 1 (a mirror swapping recipients).
    const swapped = Buffer.from(up);
    AUTH[0].publicKey.copy(swapped, 1 + PSEUDONYM_ENTRY_LEN);
    AUTH[1].publicKey.copy(swapped, 1);
    expect(codeOf(() => openPseudonymUpload(swapped, AUTH[0]))).toBe('HIDDEN_PSEUDONYM_UNSEALED');
    // One flipped bit anywhere in the sealed part.
    for (const at of [1 + 32, 1 + 32 + 100, 1 + PSEUDONYM_ENTRY_LEN - 1]) {
      const flipped = Buffer.from(up);
      flipped[at] ^= 0x01;
      expect(codeOf(() => openPseudonymUpload(flipped, AUTH[0]))).toBe('HIDDEN_PSEUDONYM_UNSEALED');
    }
  });

  it.runIf(fs.existsSync('/proc/self/maps'))('opening maps no memory of its own: 4,000 refused uploads in one go leave the process\'s mappings as they were', () => {
    // Found by `npm run fuzz` (target hs-pseudonym): each opening once took a guarded allocation
    // (sodium_malloc: four mappings, unmapped only after a collection and a later turn of the
    // event loop), and about 16,000 in one go exhausted vm.max_map_count and aborted the process.
    const maps = (): number => fs.readFileSync('/proc/self/maps', 'utf8').split('\n').length;
    const flipped = upload();
    flipped[1 + 32] ^= 0x01;
    const before = maps();
    for (let i = 0; i < 4000; i++) expect(codeOf(() => openPseudonymUpload(flipped, AUTH[0]))).toBe('HIDDEN_PSEUDONYM_UNSEALED');
    expect(maps() - before).toBeLessThan(400);
  });
});

describe('an authority\'s refusals (SPEC.md §9.21.7)', () => {
  it('accepts a registration of a known hidden node once; the same again is "unchanged"', () => {
    const reg = new PseudonymRegistry();
    expect(judge(reg, upload())).toBe('new');
    expect(judge(reg, upload())).toBe('unchanged');
    expect(reg.identityOf(hex(P), N)).toBe(hex(NODE));
    expect(reg.identityOf(hex(P), N + 1)).toBe(hex(NODE)); // a link opened late in N lives into N + 1
    expect(reg.identityOf(hex(P), N + 2)).toBeUndefined();
    expect(reg.identityOf(hex(P), N - 1)).toBeUndefined();
  });

  it('attack: a registration whose identity signature is by another key is HIDDEN_PSEUDONYM_BAD_SIGNATURE', () => {
    // The attacker holds P and wants OTHER's receipts-to-be counted for NODE: it signs as NODE with its own key.
    const r = makePseudonymRegistration(OTHER, P, N);
    const forged = { ...r, identity: NODE.publicKey, bodyBytes: Buffer.from(r.bodyBytes) };
    NODE.publicKey.copy(forged.bodyBytes, 8);
    const body = encodePseudonymUpload(AUTH.map((a) => ({ recipient: a.publicKey, sealed: sealed(a, encodePseudonymRegistration(forged)) })));
    expect(codeOf(() => judge(new PseudonymRegistry(), body))).toBe('HIDDEN_PSEUDONYM_BAD_SIGNATURE');
    // And a pseudonym signature by another key than P.
    const r2 = makePseudonymRegistration(NODE, P, N);
    const otherP = makePseudonymRegistration(NODE, key(21), N);
    const mixed = { ...r2, pseudonymSignature: otherP.pseudonymSignature };
    const body2 = encodePseudonymUpload([{ recipient: AUTH[0].publicKey, sealed: sealed(AUTH[0], encodePseudonymRegistration(mixed)) }]);
    expect(codeOf(() => judge(new PseudonymRegistry(), body2))).toBe('HIDDEN_PSEUDONYM_BAD_SIGNATURE');
  });

  it('attack: replay for another period — the period rewritten is HIDDEN_PSEUDONYM_BAD_SIGNATURE; the old one replayed later is HIDDEN_PSEUDONYM_STALE', () => {
    const old = makePseudonymRegistration(NODE, P, N - 5);
    const rewritten = { ...old, bodyBytes: Buffer.from(old.bodyBytes), period: N };
    rewritten.bodyBytes.writeBigUInt64BE(BigInt(N), 0);
    const body = encodePseudonymUpload([{ recipient: AUTH[0].publicKey, sealed: sealed(AUTH[0], encodePseudonymRegistration(rewritten)) }]);
    expect(codeOf(() => judge(new PseudonymRegistry(), body))).toBe('HIDDEN_PSEUDONYM_BAD_SIGNATURE');
    // Replayed as it was: its period is behind the authority's N − 1.
    expect(codeOf(() => judge(new PseudonymRegistry(), upload(NODE, P, N - 5)))).toBe('HIDDEN_PSEUDONYM_STALE');
    expect(codeOf(() => judge(new PseudonymRegistry(), upload(NODE, P, N - 2)))).toBe('HIDDEN_PSEUDONYM_STALE');
    expect(codeOf(() => judge(new PseudonymRegistry(), upload(NODE, P, N + 2)))).toBe('HIDDEN_PSEUDONYM_STALE');
    for (const ok of [N - 1, N, N + 1]) expect(judge(new PseudonymRegistry(), upload(NODE, P, ok))).toBe('new');
  });

  it('attack: one pseudonym claimed by two identities is HIDDEN_PSEUDONYM_TAKEN (in any period held), and a listed relay\'s key too', () => {
    const reg = new PseudonymRegistry();
    expect(judge(reg, upload(NODE, P, N))).toBe('new');
    // OTHER also holds P (the operator of both, or P leaked) and claims it.
    expect(codeOf(() => judge(reg, upload(OTHER, P, N)))).toBe('HIDDEN_PSEUDONYM_TAKEN');
    expect(codeOf(() => judge(reg, upload(OTHER, P, N + 1)))).toBe('HIDDEN_PSEUDONYM_TAKEN');
    expect(reg.identityOf(hex(P), N)).toBe(hex(NODE));
    // A relay's identity as a pseudonym would turn its own receipts into the hidden node's.
    expect(codeOf(() => judge(reg, upload(NODE, GUARD, N)))).toBe('HIDDEN_PSEUDONYM_TAKEN');
  });

  it('an identity that is no hidden node the authority knows is HIDDEN_PSEUDONYM_UNKNOWN_NODE', () => {
    expect(codeOf(() => judge(new PseudonymRegistry(), upload(key(30), key(31), N)))).toBe('HIDDEN_PSEUDONYM_UNKNOWN_NODE');
    // A listed relay that is not hidden cannot register a pseudonym either.
    expect(codeOf(() => judge(new PseudonymRegistry(), upload(GUARD, key(31), N)))).toBe('HIDDEN_PSEUDONYM_UNKNOWN_NODE');
  });

  it(`more than ${MAX_PSEUDONYMS_PER_IDENTITY} pseudonyms of one identity in one period is HIDDEN_PSEUDONYM_TOO_MANY`, () => {
    const reg = new PseudonymRegistry();
    for (let i = 0; i < MAX_PSEUDONYMS_PER_IDENTITY; i++) expect(judge(reg, upload(NODE, key(40 + i), N))).toBe('new');
    expect(codeOf(() => judge(reg, upload(NODE, key(60), N)))).toBe('HIDDEN_PSEUDONYM_TOO_MANY');
    expect(judge(reg, upload(NODE, key(60), N + 1))).toBe('new'); // the next period has its own allowance
  });
});

describe('receipts naming a pseudonym (SPEC.md §8.4 check 4, §9.21.7)', () => {
  const PERIOD_MS = 3_600_000;
  const window = periodicUploadWindow({ genesisMs: 0, periodMs: PERIOD_MS, graceMs: PERIOD_MS });
  // Epoch e of the receipts lies in hidden period N (24 one-hour epochs a day).
  const e = N * 24 + 3;
  const at = (e + 1) * PERIOD_MS + 1000;
  const listed = new Set([hex(NODE), hex(GUARD), hex(OTHER)]);
  const hidden = new Set([hex(NODE)]);
  function receipt(ini: Ed25519KeyPair, res: Ed25519KeyPair, serial = 1): Receipt {
    const p = signReceipt({ epoch: e, initiator: ini.publicKey, responder: res.publicKey, cellsI2R: 700, cellsR2I: 900, serial }, ini);
    const r = countersign(p, { cellsI2R: 700, cellsR2I: 900 }, res, 0);
    if (!r.ok) throw new Error('setup');
    return r.receipt;
  }
  function verifier(reg: PseudonymRegistry): ReceiptVerifier {
    return new ReceiptVerifier({
      window, membership: (_e, fp) => listed.has(fp),
      pseudonymOf: (epoch, k) => {
        const id = reg.identityOf(k, Math.floor(epoch * PERIOD_MS / 86_400_000));
        return id !== undefined && hidden.has(id) ? id : undefined;
      },
    });
  }

  it('a receipt between P and the guard is accepted once P is registered, and counts as the hidden node\'s', () => {
    const reg = new PseudonymRegistry();
    // Before: P is no listed relay (what the code before §9.21.7 answered, and still answers unregistered).
    expect(verifier(reg).accept(receipt(P, GUARD), at)).toMatchObject({ ok: false, code: 'RECEIPT_UNKNOWN_RELAY' });
    judge(reg, upload());
    const v = verifier(reg);
    const r = v.accept(receipt(P, GUARD), at);
    expect(r.ok).toBe(true);
    if (r.ok) expect(r.receipt.pair).toEqual({ initiator: hex(NODE), responder: hex(GUARD), cellsI2R: 700, cellsR2I: 900 });
    expect(v.accept(receipt(P, GUARD), at)).toMatchObject({ ok: false, code: 'RECEIPT_REPLAYED' });
  });

  it('refuses a pseudonym registered for a period two before the receipt\'s, and one whose node is not hidden in that epoch\'s consensus', () => {
    const reg = new PseudonymRegistry();
    judge(reg, upload(NODE, P, N - 1), AUTH[0], ctx({ period: N - 1 }));
    expect(verifier(reg).accept(receipt(P, GUARD), at).ok).toBe(true); // N − 1 still covers epochs of N
    const late = new PseudonymRegistry();
    judge(late, upload(NODE, P, N - 2), AUTH[0], ctx({ period: N - 2 }));
    expect(verifier(late).accept(receipt(P, GUARD), at)).toMatchObject({ ok: false, code: 'RECEIPT_UNKNOWN_RELAY' });
    // OTHER is listed but not hidden in the epoch's consensus: its pseudonym is not taken for it.
    const reg2 = new PseudonymRegistry();
    judge(reg2, upload(OTHER, key(22), N));
    expect(verifier(reg2).accept(receipt(key(22), GUARD), at)).toMatchObject({ ok: false, code: 'RECEIPT_UNKNOWN_RELAY' });
  });

  it('refuses a receipt whose two ends stand for one node (the node\'s pseudonym with its own identity)', () => {
    const reg = new PseudonymRegistry();
    judge(reg, upload());
    expect(verifier(reg).accept(receipt(P, NODE), at)).toMatchObject({ ok: false, code: 'RECEIPT_MALFORMED' });
  });
});

describe('the authority\'s registrations survive a restart (SPEC.md §9.21.7)', () => {
  const dirs: string[] = [];
  afterEach(() => { for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true }); });

  it('are written atomically, mode 0600, before the answer, and loaded again (re-verified; a torn record dropped)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bc-pseudonyms-'));
    dirs.push(dir);
    const now = () => N * 86_400_000 + 5000;
    const opts = { dataDir: dir, signingKey: () => AUTH[1], isHiddenNode: ctx().isHiddenNode, isListedRelay: ctx().isListedRelay, now, log: silentLogger };
    const a = new PseudonymStore(opts);
    expect(await a.accept(upload())).toEqual({ result: 'new', period: N });
    await expect(a.accept(upload(OTHER, P, N))).rejects.toMatchObject({ code: 'HIDDEN_PSEUDONYM_TAKEN' });
    const file = path.join(dir, PSEUDONYMS_FILE);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.statSync(file).size).toBe(PSEUDONYM_REGISTRATION_LEN);
    fs.appendFileSync(file, Buffer.alloc(17, 1)); // a torn record
    const b = new PseudonymStore(opts);
    expect(b.load()).toBe(1);
    expect(b.identityOf(hex(P), N)).toBe(hex(NODE));
    // The restarted authority still refuses the second claim.
    await expect(b.accept(upload(OTHER, P, N))).rejects.toMatchObject({ code: 'HIDDEN_PSEUDONYM_TAKEN' });
    // A record altered on disk does not verify and is dropped.
    const bytes = fs.readFileSync(file).subarray(0, PSEUDONYM_REGISTRATION_LEN);
    bytes[100] ^= 1;
    fs.writeFileSync(file, bytes);
    const c = new PseudonymStore(opts);
    expect(c.load()).toBe(0);
    expect(c.identityOf(hex(P), N)).toBeUndefined();
  });

  it('a new registration that cannot be written is refused HIDDEN_PSEUDONYM_NOT_SAVED and not kept: a retry writes it again', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bc-pseudonyms-'));
    dirs.push(dir);
    const file = path.join(dir, PSEUDONYMS_FILE);
    fs.mkdirSync(file); // the file cannot be replaced: every write fails
    const s = new PseudonymStore({ dataDir: dir, signingKey: () => AUTH[1], isHiddenNode: ctx().isHiddenNode, isListedRelay: ctx().isListedRelay, now: () => N * 86_400_000 + 5000, log: silentLogger });
    await expect(s.accept(upload())).rejects.toMatchObject({ code: 'HIDDEN_PSEUDONYM_NOT_SAVED' });
    expect(s.identityOf(hex(P), N)).toBeUndefined();
    expect(s.registry.size).toBe(0);
    await expect(s.accept(upload())).rejects.toMatchObject({ code: 'HIDDEN_PSEUDONYM_NOT_SAVED' });
    // The disk is fixed: the retry is new, written, and loaded after a restart.
    fs.rmdirSync(file);
    expect(await s.accept(upload())).toEqual({ result: 'new', period: N });
    const again = new PseudonymStore({ dataDir: dir, signingKey: () => AUTH[1], isHiddenNode: ctx().isHiddenNode, isListedRelay: ctx().isListedRelay, now: () => N * 86_400_000 + 5000, log: silentLogger });
    expect(again.load()).toBe(1);
  });

  it('the same registration again while the write of the first is under way waits for it: both are refused when it fails', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bc-pseudonyms-'));
    dirs.push(dir);
    fs.mkdirSync(path.join(dir, PSEUDONYMS_FILE)); // every write fails
    const s = new PseudonymStore({ dataDir: dir, signingKey: () => AUTH[1], isHiddenNode: ctx().isHiddenNode, isListedRelay: ctx().isListedRelay, now: () => N * 86_400_000 + 5000, log: silentLogger });
    const first = s.accept(upload());
    const again = s.accept(upload()); // a retry sent before the first was answered
    const got = await Promise.allSettled([first, again]);
    expect(got.map((g) => (g.status === 'rejected' ? (g.reason as { code: string }).code : g.value.result))).toEqual(['HIDDEN_PSEUDONYM_NOT_SAVED', 'HIDDEN_PSEUDONYM_NOT_SAVED']);
    expect(s.registry.size).toBe(0);
  });

  it('another identity\'s registration of a pseudonym whose write is under way waits for that write: fresh when it fails, HIDDEN_PSEUDONYM_TAKEN when it is kept', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bc-pseudonyms-'));
    dirs.push(dir);
    const opts = { dataDir: dir, signingKey: () => AUTH[1], isHiddenNode: ctx().isHiddenNode, isListedRelay: ctx().isListedRelay, now: () => N * 86_400_000 + 5000, log: silentLogger };
    const s = new PseudonymStore(opts);
    // Only the first write fails (its file is a folder: it cannot be replaced).
    let writes = 0;
    const real = path.join(dir, PSEUDONYMS_FILE);
    const blocked = path.join(dir, 'blocked');
    fs.mkdirSync(blocked);
    Object.defineProperty(s, 'file', { get: () => (++writes === 1 ? blocked : real) });
    const first = s.accept(upload(NODE, P, N));
    const second = s.accept(upload(OTHER, P, N)); // sent while NODE's registration is being written
    const got = await Promise.allSettled([first, second]);
    expect(got.map((g) => (g.status === 'rejected' ? (g.reason as { code: string }).code : g.value.result))).toEqual(['HIDDEN_PSEUDONYM_NOT_SAVED', 'new']);
    expect(s.identityOf(hex(P), N)).toBe(hex(OTHER));
    const again = new PseudonymStore(opts);
    expect(again.load()).toBe(1);
    expect(again.identityOf(hex(P), N)).toBe(hex(OTHER));
    // When the first write is kept, the other identity's claim made during it is refused.
    const t = new PseudonymStore({ ...opts, dataDir: fs.mkdtempSync(path.join(os.tmpdir(), 'bc-pseudonyms-')) });
    dirs.push(t.file.slice(0, -PSEUDONYMS_FILE.length - 1));
    const kept = await Promise.allSettled([t.accept(upload(NODE, P, N)), t.accept(upload(OTHER, P, N + 1))]);
    expect(kept.map((g) => (g.status === 'rejected' ? (g.reason as { code: string }).code : g.value.result))).toEqual(['new', 'HIDDEN_PSEUDONYM_TAKEN']);
    expect(t.identityOf(hex(P), N)).toBe(hex(NODE));
  });

  it('a registration sealed to another signing key is refused by this authority', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bc-pseudonyms-'));
    dirs.push(dir);
    const s = new PseudonymStore({ dataDir: dir, signingKey: () => ed25519Generate(), isHiddenNode: () => true, isListedRelay: () => false, now: () => N * 86_400_000, log: silentLogger });
    await expect(s.accept(upload())).rejects.toMatchObject({ code: 'HIDDEN_PSEUDONYM_UNSEALED' });
    expectCode(() => decodePseudonymUpload(Buffer.alloc(0)), 'HIDDEN_PSEUDONYM_MALFORMED');
  });
});

function sealed(a: Ed25519KeyPair, plain: Buffer): Buffer { return sealToEd25519(a.publicKey, plain); }
