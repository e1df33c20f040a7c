// SPEC.md §9.21: the relay message bodies of hidden storage nodes (ESTABLISH_INTRO, INTRODUCE1/2,
// INTRODUCE_ACK, ESTABLISH_RENDEZVOUS, RENDEZVOUS_ESTABLISHED, RENDEZVOUS1/2) and the hidden
// descriptor's outer and inner layouts. Signing, sealing and checking are src/hidden/'s.
import { err } from '../errors';
import { Reader, Writer } from './bytes';
import { readLinkSpecifier, writeLinkSpecifier, type LinkSpecifier } from './link-specifier';
import { RELAY_DATA_MAX } from './relay-msg';

export const HS_COOKIE_LEN = 20;
export const HS_KEY_LEN = 32;
export const HS_SIG_LEN = 64;
export const HS_NONCE_LEN = 24;
export const HS_AEAD_TAG_LEN = 16;
/** ntor onionskin (§4.2) and reply lengths. */
export const HS_ONIONSKIN_LEN = 96;
export const HS_NTOR_REPLY_LEN = 64;
export const ESTABLISH_INTRO_LEN = HS_KEY_LEN + 8 + HS_SIG_LEN;
/** INTRODUCE1/2 cleartext header: auth_key | client_key | nonce. */
export const INTRODUCE_HEADER_LEN = HS_KEY_LEN + HS_KEY_LEN + HS_NONCE_LEN;

/** INTRODUCE_ACK status (SPEC.md §9.21.5). */
export const IntroduceAckStatus = { SENT: 0, UNKNOWN_KEY: 1, MALFORMED: 2, RATE_LIMITED: 3 } as const;
/** RENDEZVOUS_ESTABLISHED status (SPEC.md §9.21.5). */
export const RendezvousStatus = { OK: 0, COOKIE_REUSED: 1 } as const;

const M = (what: string) => ({ what });

function exactKey(b: Uint8Array, n: number, field: string): void {
  if (!(b instanceof Uint8Array) || b.length !== n) throw err('MSG_MALFORMED', `${field} must be ${n} bytes`);
}

// ---- ESTABLISH_INTRO (32) ----

/**
 * SPEC.md §9.21.4: the optional DoS extension (as Tor's ESTABLISH_INTRO DoS parameters): the
 * introduction point lets at most `burst` INTRODUCE1s through at once and `ratePerSec` a second.
 */
export interface IntroDosParams { ratePerSec: number; burst: number }
export const INTRO_DOS_MAX = 0x7fffffff;
/** The introduction point's defaults when ESTABLISH_INTRO carries no extension (Tor's: 25/s, burst 200). */
export const DEFAULT_INTRO_DOS: IntroDosParams = { ratePerSec: 25, burst: 200 };

export interface EstablishIntro { authKey: Buffer; timestamp: number; signature: Buffer; dos?: IntroDosParams }

function dosBytes(dos: IntroDosParams | undefined): Buffer {
  if (!dos) return Buffer.alloc(0);
  return new Writer(8, 'ESTABLISH_INTRO').u32(dos.ratePerSec, 'rate_per_sec').u32(dos.burst, 'burst').finish();
}

/** The signed bytes: with the extension, its 8 bytes too. */
export function establishIntroSignedBytes(ipIdentity: Uint8Array, authKey: Uint8Array, timestamp: number, dos?: IntroDosParams): Buffer {
  const t = Buffer.alloc(8);
  t.writeBigUInt64BE(BigInt(timestamp));
  return Buffer.concat([Buffer.from('bitcloud-hs-establish-intro-v1', 'ascii'), ipIdentity, authKey, t, dosBytes(dos)]);
}

function checkDos(dos: IntroDosParams): void {
  if (!Number.isInteger(dos.ratePerSec) || !Number.isInteger(dos.burst) || dos.ratePerSec < 1 || dos.burst < dos.ratePerSec || dos.burst > INTRO_DOS_MAX) {
    throw err('MSG_MALFORMED', `ESTABLISH_INTRO: DoS parameters need 1 <= rate_per_sec <= burst <= ${INTRO_DOS_MAX}`);
  }
}

export function encodeEstablishIntro(m: EstablishIntro): Buffer {
  exactKey(m.authKey, HS_KEY_LEN, 'auth_key');
  exactKey(m.signature, HS_SIG_LEN, 'signature');
  if (m.dos) checkDos(m.dos);
  const w = new Writer(ESTABLISH_INTRO_LEN + (m.dos ? 8 : 0), 'ESTABLISH_INTRO').bytes(m.authKey).u64(m.timestamp, 'timestamp').bytes(m.signature);
  if (m.dos) w.u32(m.dos.ratePerSec, 'rate_per_sec').u32(m.dos.burst, 'burst');
  return w.finish();
}

export function decodeEstablishIntro(b: Uint8Array): EstablishIntro {
  const r = new Reader(b, 'ESTABLISH_INTRO');
  const m: EstablishIntro = { authKey: r.bytes(HS_KEY_LEN, 'auth_key'), timestamp: r.u64('timestamp'), signature: r.bytes(HS_SIG_LEN, 'signature') };
  if (r.remaining !== 0 && r.remaining !== 8) throw err('MSG_MALFORMED', `ESTABLISH_INTRO: ${r.remaining} bytes after the signature (0, or the 8-byte DoS extension)`);
  if (r.remaining === 8) {
    m.dos = { ratePerSec: r.u32('rate_per_sec'), burst: r.u32('burst') };
    checkDos(m.dos);
  }
  r.end();
  return m;
}

// ---- ESTABLISH_RENDEZVOUS (33), RENDEZVOUS_ESTABLISHED (39), INTRODUCE_ACK (41) ----

export function encodeCookie(cookie: Uint8Array): Buffer {
  exactKey(cookie, HS_COOKIE_LEN, 'cookie');
  return Buffer.from(cookie);
}

export function decodeCookie(b: Uint8Array): Buffer {
  const r = new Reader(b, 'ESTABLISH_RENDEZVOUS');
  const c = r.bytes(HS_COOKIE_LEN, 'cookie');
  r.end();
  return c;
}

export function encodeStatus(status: number): Buffer {
  return new Writer(1, 'status').u8(status, 'status').finish();
}

export function decodeStatus(b: Uint8Array, what: string): number {
  const r = new Reader(b, what);
  const s = r.u8('status');
  r.end();
  return s;
}

// ---- INTRODUCE1 (34) / INTRODUCE2 (35): the same body ----

export interface Introduce { authKey: Buffer; clientKey: Buffer; nonce: Buffer; ciphertext: Buffer }

export function encodeIntroduce(m: Introduce): Buffer {
  exactKey(m.authKey, HS_KEY_LEN, 'auth_key');
  exactKey(m.clientKey, HS_KEY_LEN, 'client_key');
  exactKey(m.nonce, HS_NONCE_LEN, 'nonce');
  return new Writer(RELAY_DATA_MAX, 'INTRODUCE1').bytes(m.authKey).bytes(m.clientKey).bytes(m.nonce).bytes(m.ciphertext).finish();
}

export function decodeIntroduce(b: Uint8Array): Introduce {
  const r = new Reader(b, 'INTRODUCE1');
  const authKey = r.bytes(HS_KEY_LEN, 'auth_key');
  const clientKey = r.bytes(HS_KEY_LEN, 'client_key');
  const nonce = r.bytes(HS_NONCE_LEN, 'nonce');
  if (r.remaining < HS_AEAD_TAG_LEN) throw err('MSG_TRUNCATED', 'INTRODUCE1: ciphertext shorter than its tag', M('INTRODUCE1'));
  const ciphertext = r.bytes(r.remaining, 'ciphertext');
  return { authKey, clientKey, nonce, ciphertext };
}

/** The sealed part of an introduction. */
export interface IntroducePlaintext {
  cookie: Buffer;
  rpLinkSpecifiers: LinkSpecifier[];
  rpOnionKey: Buffer;
  onionskin: Buffer;
}

export function encodeIntroducePlaintext(p: IntroducePlaintext): Buffer {
  exactKey(p.cookie, HS_COOKIE_LEN, 'cookie');
  exactKey(p.rpOnionKey, HS_KEY_LEN, 'rp_onion_key');
  exactKey(p.onionskin, HS_ONIONSKIN_LEN, 'onionskin');
  const w = new Writer(RELAY_DATA_MAX, 'INTRODUCE plaintext').bytes(p.cookie).u8(p.rpLinkSpecifiers.length, 'nspec');
  for (const ls of p.rpLinkSpecifiers) writeLinkSpecifier(w, ls);
  return w.bytes(p.rpOnionKey).bytes(p.onionskin).finish();
}

export function decodeIntroducePlaintext(b: Uint8Array): IntroducePlaintext {
  const r = new Reader(b, 'INTRODUCE plaintext');
  const cookie = r.bytes(HS_COOKIE_LEN, 'cookie');
  const n = r.u8('nspec');
  const rpLinkSpecifiers: LinkSpecifier[] = [];
  for (let i = 0; i < n; i++) rpLinkSpecifiers.push(readLinkSpecifier(r));
  const rpOnionKey = r.bytes(HS_KEY_LEN, 'rp_onion_key');
  const onionskin = r.bytes(HS_ONIONSKIN_LEN, 'onionskin');
  r.end();
  checkSpecs(rpLinkSpecifiers, 'INTRODUCE plaintext');
  return { cookie, rpLinkSpecifiers, rpOnionKey, onionskin };
}

/** Exactly one Ed25519 specifier and at least one address, as EXTEND2 (SPEC.md §2.7.4). */
function checkSpecs(specs: LinkSpecifier[], what: string): void {
  const ids = specs.filter((s) => s.type === 'ed25519').length;
  const addrs = specs.filter((s) => s.type === 'ipv4' || s.type === 'ipv6').length;
  if (ids !== 1 || addrs < 1) throw err('MSG_MALFORMED', `${what}: link specifiers need one Ed25519 id and an address`);
}

// ---- RENDEZVOUS1 (36), RENDEZVOUS2 (37) ----

export interface Rendezvous1 { cookie: Buffer; reply: Buffer }

export function encodeRendezvous1(m: Rendezvous1): Buffer {
  exactKey(m.cookie, HS_COOKIE_LEN, 'cookie');
  exactKey(m.reply, HS_NTOR_REPLY_LEN, 'reply');
  return Buffer.concat([m.cookie, m.reply]);
}

export function decodeRendezvous1(b: Uint8Array): Rendezvous1 {
  const r = new Reader(b, 'RENDEZVOUS1');
  const m = { cookie: r.bytes(HS_COOKIE_LEN, 'cookie'), reply: r.bytes(HS_NTOR_REPLY_LEN, 'reply') };
  r.end();
  return m;
}

export function decodeRendezvous2(b: Uint8Array): Buffer {
  const r = new Reader(b, 'RENDEZVOUS2');
  const reply = r.bytes(HS_NTOR_REPLY_LEN, 'reply');
  r.end();
  return reply;
}

// ---- the hidden descriptor (SPEC.md §9.21.3) ----

export const HS_DESC_MAGIC = Buffer.from('BCHSD1', 'ascii');
export const HS_DESC_MAX = 2048;
export const HS_DESC_HEADER_LEN = 92;
export const HS_DESC_SEALED_MAX = 1900;
export const HS_MAX_INTROS = 8;

const D = { truncated: 'HIDDEN_DESC_MALFORMED', malformed: 'HIDDEN_DESC_MALFORMED' } as const;

export interface HsDescriptorOuter {
  blindedKey: Buffer;
  period: number;
  periodLength: number;
  revision: number;
  validUntil: number;
  nonce: Buffer;
  sealed: Buffer;
  signature: Buffer;
  /** Bytes 0 .. 92 + ct_len (the header, AD of the seal). */
  header: Buffer;
  /** The bytes the signature covers, without the signing tag. */
  signedPart: Buffer;
}

export function encodeHsDescriptorUnsigned(o: Omit<HsDescriptorOuter, 'signature' | 'header' | 'signedPart'>): { header: Buffer; withSealed: Buffer } {
  if (o.sealed.length < 17 || o.sealed.length > HS_DESC_SEALED_MAX) throw err('HIDDEN_DESC_MALFORMED', `sealed body of ${o.sealed.length} bytes`);
  const w = new Writer(HS_DESC_HEADER_LEN, 'hidden descriptor', D).bytes(HS_DESC_MAGIC).bytes(o.blindedKey).u64(o.period, 'period')
    .u32(o.periodLength, 'period_length').u64(o.revision, 'revision').u64(o.validUntil, 'valid_until').bytes(o.nonce)
    .u16(o.sealed.length, 'ct_len');
  const header = w.finish();
  return { header, withSealed: Buffer.concat([header, o.sealed]) };
}

export function decodeHsDescriptorOuter(b: Uint8Array): HsDescriptorOuter {
  if (b.length > HS_DESC_MAX) throw err('HIDDEN_DESC_MALFORMED', `descriptor of ${b.length} bytes (max ${HS_DESC_MAX})`);
  const r = new Reader(b, 'hidden descriptor', D);
  const magic = r.bytes(6, 'magic');
  if (!magic.equals(HS_DESC_MAGIC)) throw err('HIDDEN_DESC_MALFORMED', 'not a hidden descriptor (magic)');
  const blindedKey = r.bytes(HS_KEY_LEN, 'blinded_key');
  const period = r.u64('period');
  const periodLength = r.u32('period_length');
  const revision = r.u64('revision');
  const validUntil = r.u64('valid_until');
  const nonce = r.bytes(HS_NONCE_LEN, 'nonce');
  const ctLen = r.u16('ct_len');
  if (ctLen < 17 || ctLen > HS_DESC_SEALED_MAX) throw err('HIDDEN_DESC_MALFORMED', `ct_len ${ctLen}`);
  const sealed = r.bytes(ctLen, 'sealed');
  const signature = r.bytes(HS_SIG_LEN, 'signature');
  r.end();
  const buf = Buffer.from(b.buffer, b.byteOffset, b.length);
  return {
    blindedKey, period, periodLength, revision, validUntil, nonce, sealed, signature,
    header: Buffer.from(buf.subarray(0, HS_DESC_HEADER_LEN)),
    signedPart: Buffer.from(buf.subarray(0, HS_DESC_HEADER_LEN + ctLen)),
  };
}

export interface HsIntroPoint { linkSpecifiers: LinkSpecifier[]; authKey: Buffer; encKey: Buffer }
export interface HsDescriptorInner { ntorKey: Buffer; intros: HsIntroPoint[] }

export function encodeHsDescriptorInner(inner: HsDescriptorInner): Buffer {
  exactKey(inner.ntorKey, HS_KEY_LEN, 'ntor_key');
  if (inner.intros.length < 1 || inner.intros.length > HS_MAX_INTROS) throw err('HIDDEN_DESC_MALFORMED', `${inner.intros.length} introduction points (1..${HS_MAX_INTROS})`);
  const w = new Writer(HS_DESC_SEALED_MAX - HS_AEAD_TAG_LEN, 'hidden descriptor body', D).bytes(inner.ntorKey).u8(inner.intros.length, 'n_intro');
  for (const ip of inner.intros) {
    exactKey(ip.authKey, HS_KEY_LEN, 'auth_key');
    exactKey(ip.encKey, HS_KEY_LEN, 'enc_key');
    w.u8(ip.linkSpecifiers.length, 'nspec');
    for (const ls of ip.linkSpecifiers) writeLinkSpecifier(w, ls);
    w.bytes(ip.authKey).bytes(ip.encKey);
  }
  return w.finish();
}

export function decodeHsDescriptorInner(b: Uint8Array): HsDescriptorInner {
  const r = new Reader(b, 'hidden descriptor body', D);
  const ntorKey = r.bytes(HS_KEY_LEN, 'ntor_key');
  const n = r.u8('n_intro');
  if (n < 1 || n > HS_MAX_INTROS) throw err('HIDDEN_DESC_MALFORMED', `${n} introduction points`);
  const intros: HsIntroPoint[] = [];
  for (let i = 0; i < n; i++) {
    const ns = r.u8('nspec');
    const linkSpecifiers: LinkSpecifier[] = [];
    try {
      for (let j = 0; j < ns; j++) linkSpecifiers.push(readLinkSpecifier(r));
      checkSpecs(linkSpecifiers, 'hidden descriptor');
    } catch (e) {
      throw err('HIDDEN_DESC_MALFORMED', (e as Error).message);
    }
    intros.push({ linkSpecifiers, authKey: r.bytes(HS_KEY_LEN, 'auth_key'), encKey: r.bytes(HS_KEY_LEN, 'enc_key') });
  }
  r.end();
  return { ntorKey, intros };
}
