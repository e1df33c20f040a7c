// The fuzz targets: every decoder that bytes from the network or from disk reach, each called
// exactly as the daemons call it. A target's `decode` must either return or throw a BitcloudError;
// anything else (a TypeError, a RangeError, a hang, an allocation out of proportion to the input)
// is a bug in the decoder. Seeds are real encodings made by the project's own encoders so that
// mutations start deep inside each format rather than at its first length check.
//
// Signed documents (descriptors, votes, consensus documents, policies) are fuzzed twice: once as
// received (the signature check stops most mutations early), and once as "-content" targets that
// take the fuzzed bytes as the signed content and sign them here with fixed test keys, so that
// every check after the signature sees the mutated fields too.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ed25519FromSeed, x25519Public, type Ed25519KeyPair } from '../../src/crypto/primitives';
import { fingerprint } from '../../src/crypto/keys';
import { loadEd25519Secret, readX25519SecretFile, saveEd25519Secret, saveX25519Secret } from '../../src/crypto/keys';
import {
  CELL_LEN, CELL_PAYLOAD_LEN, CellCommand, decodeCell, decodeReceiptRequest, encodeCell, encodeReceiptRequest,
} from '../../src/wire/cell';
import { CellAssembler } from '../../src/link/framing';
import {
  RelayCommand, decodeRelayPayload, encodeRelayPayload,
} from '../../src/wire/relay-msg';
import {
  EndReason, decodeBegin, decodeBeginDir, decodeBeginStorage, decodeConnected, decodeCreate2, decodeCreated2, decodeDestroy,
  decodeEnd, decodeExtend2, decodeExtended2, decodeResolve, decodeResolved, decodeSendme, decodeTruncate,
  decodeTruncated, decodeVersions, encodeBegin, encodeConnected, encodeCreate2, encodeCreated2, encodeDestroy,
  encodeEnd, encodeExtend2, encodeExtended2, encodeResolve, encodeResolved, encodeSendme, encodeTruncated,
  encodeVersions,
} from '../../src/wire/messages';
import {
  AuthRole, decodeAuthenticate, encodeAuthenticate, makeAuthenticate, negotiateVersion, SUPPORTED_LINK_VERSIONS,
  verifyAuthenticate, type TlsBinding,
} from '../../src/link/handshake';
import { parseGreeting, parseRequest, parseUserPass } from '../../src/client/socks5';
import { buildDescriptor, verifyDescriptor } from '../../src/dir/descriptor';
import { makeKeyCertificate, verifyKeyCertificate, indexCertificates } from '../../src/dir/certificate';
import { parseAuthorityList, type AuthorityInfo } from '../../src/dir/authorities';
import { verifyConsensus } from '../../src/dir/consensus';
import {
  decodeConsensus, decodeDetachedSignatures, decodeDocumentBody, decodeEnvelope, decodeRelayDescriptor, decodeVote,
  encodeDetachedSignatures, encodeRelayDescriptor, encodeVote, LIMITS,
} from '../../src/wire/docs';
import { DocType, makeBody, makeSignature, sealEnvelope, signDocument } from '../../src/wire/envelope';
import { buildVote, verifyVote, type Signer } from '../../directory/vote';
import { computeConsensus } from '../../directory/compute';
import { FLAG_BITS } from '../../src/dir/types';
import {
  countersign, decodeReceipt, decodeReceiptBatch, decodeReceiptBody, decodeReceiptProposal, decodeReceiptReject,
  encodeReceipt, encodeReceiptBatch, encodeReceiptBody, encodeReceiptProposal, encodeReceiptReject, signReceipt,
  verifyReceipt, acceptCountersign, type Receipt, type ReceiptBody,
} from '../../src/bandwidth/receipt';
import { ReceiptVerifier, periodicUploadWindow } from '../../src/bandwidth/verify';
import { makePseudonymRegistration, openPseudonymUpload, sealPseudonymUpload } from '../../src/hidden/pseudonym';
import { decodePseudonymUpload, encodePseudonymRegistration } from '../../src/wire/pseudonym';
import { answerReceiptUpload } from '../../directory/receipts';
import {
  applyRewardBlock, decodeRewardBlock, decodeRewardChainBundle, emptyChainState,
  encodeRewardBlock, encodeRewardChainBundle, encodeSignedRewardBlock, GENESIS_PREVIOUS_HASH, rewardBlockHash,
  signRewardBlock, staticAuthorities, verifyChain,
} from '../../src/bandwidth/reward-chain';
import { CHUNK_OVERHEAD } from '../../src/storage/encode';
import { FrameDecoder, encodeFrame } from '../../src/storage/framing';
import { decodeRequest, decodeResponse, encodeRequest, encodeResponse } from '../../src/storage/protocol';
import { decodeManifest, decodeRoot, encodeManifest, encodeRoot, makeManifest, type Layout } from '../../src/storage/manifest';
import { parseCapability, formatCapability } from '../../src/storage/capability';
import { decodeNameValue, encodeNameValue, parseName, formatName } from '../../src/storage/name';
import { decodePolicyContent, encodePolicyContent, signPolicy, verifyPolicyVersion, type PolicyContent } from '../../src/moderation/policy';
import { decodeBundle, encodeBundle, advancePolicy } from '../../src/moderation/chain';
import { decodeHead, encodeHead } from '../../src/moderation/dht';
import { packEntries, parseDenyTarget, splitEntries, denyEntry } from '../../src/moderation/denylist';
import { PolicyStore } from '../../src/moderation/store';
import { policyUploadAnswer } from '../../src/moderation/sources';
import { uploadRefusals } from '../../src/bandwidth/receipt-upload';
import { errorBodyReason } from '../../src/dir/fetch';

export interface FuzzTarget {
  name: string;
  /** What it covers, for the table and the docs. */
  about: string;
  /** Valid encodings to start from. */
  seeds: () => Buffer[];
  /** Decode one input. Return normally or throw a BitcloudError; anything else is a finding. */
  decode: (bytes: Buffer) => unknown;
  /** Largest input worth generating (default 4096). */
  maxLen?: number;
}

// ---- fixed keys and fixtures (deterministic: a finding replays the same way) ----

const key = (n: number): Ed25519KeyPair => ed25519FromSeed(Buffer.alloc(32, n));
const NOW = 1_800_000_000_000;
const PERIOD = 60;
const PS = Math.floor(NOW / (PERIOD * 1000)) * PERIOD * 1000;

const relayKey = key(1);
const otherRelay = key(2);
const onion = x25519Public(Buffer.alloc(32, 3));

interface Auth { id: Ed25519KeyPair; signer: Signer }
function authority(n: number): Auth {
  const id = key(10 + n);
  const sk = key(20 + n);
  return { id, signer: { identity: id.publicKey, signingKey: sk, certificate: makeKeyCertificate(id, sk.publicKey, NOW - 86_400_000, NOW + 86_400_000) } };
}
let authsCache: Auth[] | null = null;
const auths = (): Auth[] => (authsCache ??= [authority(0), authority(1), authority(2)]);
let authListCache: AuthorityInfo[] | null = null;
const authList = (): AuthorityInfo[] => (authListCache ??= parseAuthorityList(auths().map((a, i) => ({
  name: `a${i}`, identity: a.id.publicKey.toString('hex'), address: `127.0.0.1:${7000 + i}`,
}))));

function descriptorRaw(k: Ed25519KeyPair, i: number, o: { exit?: boolean; storage?: boolean } = {}): Buffer {
  return buildDescriptor({
    identity: k, onionKey: onion, nickname: `relay${i}`, address: `10.0.0.${i + 1}`, orPort: 9000 + i, dirPort: 9030,
    storagePort: o.storage ? 7000 : undefined,
    declaredBandwidth: 2_500_000, exitPolicy: o.exit ? ['reject private:*', 'accept *:443', 'reject *:*'] : [],
    family: [otherRelay.publicKey.toString('hex')], roles: o.storage ? ['relay', 'storage'] : o.exit ? ['relay', 'exit'] : ['relay'],
    moderators: o.storage ? [key(40).publicKey.toString('hex')] : [], version: 'bitcloud-0.1.0', published: PS - 1000,
  });
}

/** The bytes a relay descriptor signs, wrapped and signed by the relay key the content names. */
function signDescriptorContent(content: Buffer): Buffer {
  const body = makeBody(DocType.RELAY_DESCRIPTOR, PS - 1000, PS + 86_400_000, content);
  return sealEnvelope(body, [{ signer: relayKey.publicKey, key: null, signature: makeSignature(body, relayKey.publicKey, relayKey).signature }]);
}

const binding: TlsBinding = { exporterValue: Buffer.alloc(32, 7), responderCertHash: Buffer.alloc(32, 8), initiatorCertHash: Buffer.alloc(32, 9) };

function receiptBody(serial: number): ReceiptBody {
  return { epoch: 30_000_000, initiator: relayKey.publicKey, responder: otherRelay.publicKey, cellsI2R: 1234, cellsR2I: 999, serial };
}
let receiptCache: Receipt | null = null;
function aReceipt(): Receipt {
  if (receiptCache) return receiptCache;
  const p = signReceipt(receiptBody(1), relayKey);
  const r = countersign(p, { cellsI2R: 1234, cellsR2I: 999 }, otherRelay, 1000);
  if (!r.ok) throw new Error('fixture receipt was not countersigned');
  return (receiptCache = r.receipt);
}

// ---- helpers ----

/** A selector byte picks one of several decoders; the rest of the input goes to it. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function pick(bytes: Buffer, fns: readonly ((b: Buffer) => any)[]): unknown {
  if (bytes.length === 0) return undefined;
  return fns[bytes[0] % fns.length](bytes.subarray(1));
}
const tag = (n: number, b: Buffer): Buffer => Buffer.concat([Buffer.from([n]), b]);
/** A 509-byte payload from arbitrary bytes (truncated or zero-padded), as a cell would carry. */
function payload509(b: Buffer): Buffer {
  const p = Buffer.alloc(CELL_PAYLOAD_LEN);
  b.copy(p, 0, 0, Math.min(b.length, CELL_PAYLOAD_LEN));
  return p;
}

// ---- cells and relay messages ----

const cellPayloadDecoders: Record<number, (p: Buffer) => unknown> = {
  [CellCommand.VERSIONS]: decodeVersions,
  [CellCommand.CREATE2]: decodeCreate2,
  [CellCommand.CREATED2]: decodeCreated2,
  [CellCommand.DESTROY]: decodeDestroy,
  [CellCommand.AUTHENTICATE]: (p) => verifyAuthenticate(decodeAuthenticate(p), AuthRole.INITIATOR, binding),
  [CellCommand.RECEIPT_PROPOSE]: decodeReceiptProposal,
  [CellCommand.RECEIPT_COUNTERSIGN]: decodeReceipt,
  [CellCommand.RECEIPT_REJECT]: decodeReceiptReject,
  [CellCommand.RECEIPT_REQUEST]: decodeReceiptRequest,
  [CellCommand.RELAY]: decodeRelayPayload,
  [CellCommand.RELAY_EARLY]: decodeRelayPayload,
};

function relayBody(command: number, data: Buffer): unknown {
  switch (command) {
    case RelayCommand.BEGIN: return decodeBegin(data);
    case RelayCommand.END: return decodeEnd(data);
    case RelayCommand.CONNECTED: return decodeConnected(data);
    case RelayCommand.SENDME: return decodeSendme(data);
    case RelayCommand.TRUNCATE: return decodeTruncate(data);
    case RelayCommand.TRUNCATED: return decodeTruncated(data);
    case RelayCommand.RESOLVE: return decodeResolve(data);
    case RelayCommand.RESOLVED: return decodeResolved(data);
    case RelayCommand.BEGIN_DIR: return decodeBeginDir(data);
    case RelayCommand.EXTEND2: return decodeExtend2(data);
    case RelayCommand.EXTENDED2: return decodeExtended2(data);
    case RelayCommand.BEGIN_STORAGE: return decodeBeginStorage(data);
    default: return data;
  }
}

const relaySeedBodies = (): [number, number, Buffer][] => [
  [RelayCommand.BEGIN, 1, encodeBegin({ host: 'example.com', port: 443, flags: 0 })],
  [RelayCommand.BEGIN, 2, encodeBegin({ host: '2001:db8::1', port: 80 })],
  [RelayCommand.DATA, 1, Buffer.from('GET / HTTP/1.0\r\n\r\n')],
  [RelayCommand.END, 1, encodeEnd(EndReason.EXITPOLICY, { addr: '10.0.0.1', ttl: 60 })],
  [RelayCommand.CONNECTED, 1, encodeConnected({ addr: '93.184.216.34', ttl: 300 })],
  [RelayCommand.CONNECTED, 1, encodeConnected({ addr: '2001:db8::1', ttl: 300 })],
  [RelayCommand.SENDME, 0, encodeSendme({ version: 1, digest: Buffer.alloc(20, 5) })],
  [RelayCommand.TRUNCATED, 0, encodeTruncated(1)],
  [RelayCommand.RESOLVE, 3, encodeResolve('example.org')],
  [RelayCommand.RESOLVED, 3, encodeResolved([{ type: 'ipv4', value: '1.2.3.4', ttl: 60 }, { type: 'ipv6', value: '::1', ttl: 60 }, { type: 'hostname', value: 'a.example', ttl: 5 }])],
  [RelayCommand.BEGIN_DIR, 4, Buffer.alloc(0)],
  [RelayCommand.EXTEND2, 0, encodeExtend2({ linkSpecifiers: [{ type: 'ipv4', addr: '10.0.0.2', port: 9001 }, { type: 'ed25519', id: otherRelay.publicKey }, { type: 'ipv6', addr: '2001:db8::2', port: 9001 }], htype: 2, hdata: Buffer.alloc(84, 1) })],
  [RelayCommand.EXTENDED2, 0, encodeExtended2({ hdata: Buffer.alloc(64, 2) })],
  [RelayCommand.BEGIN_STORAGE, 5, Buffer.alloc(0)],
];

function cellSeeds(): Buffer[] {
  const cells = [
    encodeCell(0, CellCommand.VERSIONS, encodeVersions([1, 2, 3])),
    encodeCell(0, CellCommand.AUTHENTICATE, makeAuthenticate(AuthRole.INITIATOR, relayKey, binding)),
    encodeCell(0x80000001, CellCommand.CREATE2, encodeCreate2({ htype: 2, hdata: Buffer.alloc(84, 1) })),
    encodeCell(0x80000001, CellCommand.CREATED2, encodeCreated2({ hdata: Buffer.alloc(64, 2) })),
    encodeCell(0x80000001, CellCommand.DESTROY, encodeDestroy(3)),
    encodeCell(0, CellCommand.RECEIPT_PROPOSE, encodeReceiptProposal(aReceipt())),
    encodeCell(0, CellCommand.RECEIPT_COUNTERSIGN, encodeReceipt(aReceipt())),
    encodeCell(0, CellCommand.RECEIPT_REJECT, encodeReceiptReject({ epoch: 5, serial: 2, reason: 'COUNTS_MISMATCH', cellsI2R: 1, cellsR2I: 2, tolerance: 3 } as never)),
    encodeCell(0, CellCommand.RECEIPT_REQUEST, encodeReceiptRequest({ epoch: 30_000_000, reason: 'CLOSING' })),
    ...relaySeedBodies().map(([c, s, d]) => encodeCell(0x80000002, CellCommand.RELAY, encodeRelayPayload(c, s, d))),
  ];
  return [...cells, Buffer.concat(cells.slice(0, 4))];
}

// ---- directory documents ----

function consensusRaw(): Buffer {
  const entries = [0, 1, 2, 3].map((i) => ({ descriptor: verifyDescriptor(descriptorRaw(key(50 + i), i, { exit: i % 2 === 0, storage: i === 3 })), flags: FLAG_BITS.Running | FLAG_BITS.Valid, measured: 100 }));
  const votes = auths().map((a) => ({ authority: a.id.publicKey, knownFlags: 0x7f, entries }));
  const c = computeConsensus(votes, { totalAuthorities: 3, periodStart: PS, periodSeconds: PERIOD, lifetimePeriods: 3 });
  const body = (c as { body: Buffer }).body;
  return sealEnvelope(body, auths().map((a) => makeSignature(body, a.id.publicKey, a.signer.signingKey)), auths().map((a) => a.signer.certificate));
}

/** Sign arbitrary consensus content with two of the three authorities (a majority). */
function signConsensusContent(content: Buffer): Buffer {
  const body = makeBody(DocType.CONSENSUS, PS, PS + 3 * PERIOD * 1000, content);
  const who = auths().slice(0, 2);
  return sealEnvelope(body, who.map((a) => makeSignature(body, a.id.publicKey, a.signer.signingKey)), who.map((a) => a.signer.certificate));
}

function voteRaw(): Buffer {
  const a = auths()[0];
  const entries = [0, 1].map((i) => { const k = key(60 + i); return { descriptorRaw: descriptorRaw(k, i), identity: k.publicKey, flags: 3, measured: 50, proven: 10 }; });
  return buildVote(a.signer, PS, PERIOD, 0x7f, entries);
}

function signVoteContent(content: Buffer): Buffer {
  const a = auths()[0];
  const body = makeBody(DocType.VOTE, PS, PS + PERIOD * 1000, content);
  return sealEnvelope(body, [makeSignature(body, a.id.publicKey, a.signer.signingKey)], [a.signer.certificate]);
}

function contentOf(raw: Buffer, max: number): Buffer {
  return decodeDocumentBody(decodeEnvelope(raw, max).body, max).content;
}

// ---- rewards ----

function rewardSeeds(): { block: Buffer; signed: Buffer; bundle: Buffer } {
  const allocations = new Map([[relayKey.publicKey.toString('hex'), 600n], [otherRelay.publicKey.toString('hex'), 400n]]);
  const sorted = new Map([...allocations].sort(([a], [b]) => (a < b ? -1 : 1)));
  const block = encodeRewardBlock({ height: 0, previousHash: GENESIS_PREVIOUS_HASH, epoch: 30_000_000, minted: 1000n, allocations: sorted });
  const sigs = auths().map((a) => signRewardBlock(block, a.id.publicKey, a.signer.signingKey));
  const signed = encodeSignedRewardBlock(block, sigs);
  const block2 = encodeRewardBlock({ height: 1, previousHash: rewardBlockHash(block), epoch: 30_000_001, minted: 0n, allocations: new Map() });
  const signed2 = encodeSignedRewardBlock(block2, auths().map((a) => signRewardBlock(block2, a.id.publicKey, a.signer.signingKey)));
  const bundle = encodeRewardChainBundle(2, auths().map((a) => a.signer.certificate), [signed, signed2]);
  return { block, signed, bundle };
}
const rewardAuthorities = () => staticAuthorities(auths().map((a) => ({ identity: a.id.publicKey, signingKeys: [a.signer.signingKey.publicKey] })));

// ---- storage ----

function layout(): Layout {
  return {
    size: 5000, chunkSize: 4096, coding: { k: 4, n: 6 },
    chunks: [
      { encLen: 4096 + CHUNK_OVERHEAD, shareIds: Array.from({ length: 6 }, (_, i) => Buffer.alloc(32, i + 1)) },
      { encLen: 904 + CHUNK_OVERHEAD, shareIds: Array.from({ length: 6 }, (_, i) => Buffer.alloc(32, i + 11)) },
    ],
  } as Layout;
}

function storageRequests(): Buffer[] {
  const id = Buffer.alloc(32, 4);
  return [
    encodeRequest(1, { type: 'put', id, data: Buffer.alloc(100, 1), leaseSeconds: 3600, contentClass: 'encrypted-private' }),
    encodeRequest(2, { type: 'get', id, offset: 0, length: 100 }),
    encodeRequest(3, { type: 'has', ids: [id, Buffer.alloc(32, 5)] }),
    encodeRequest(4, { type: 'audit', id, nonce: Buffer.alloc(16, 6) }),
    encodeRequest(5, { type: 'stat' }),
    encodeRequest(6, { type: 'renew', ids: [id], leaseSeconds: 60 }),
  ];
}
function storageResponses(): Buffer[] {
  return [
    encodeResponse(1, { type: 'put', expiresAt: NOW }),
    encodeResponse(2, { type: 'get', offset: 0, data: Buffer.alloc(50, 3), totalSize: 100 }),
    encodeResponse(3, { type: 'has', present: [true, false] }),
    encodeResponse(4, { type: 'audit', proof: Buffer.alloc(32, 7) }),
    encodeResponse(5, { type: 'stat', capacity: 1e9, used: 5, shares: 1, maxLeaseSeconds: 86400, maxShareBytes: 1 << 20 }),
    encodeResponse(6, { type: 'renew', expiresAt: [NOW] }),
    encodeResponse(7, { type: 'error', code: 'STORAGE_NOT_FOUND', message: 'no such share' }),
  ];
}

// ---- moderation ----

const moderator = key(40);
const modFp = moderator.publicKey.toString('hex');
function policyContent(seq: number, previous: Buffer | null): Omit<PolicyContent, 'moderator'> {
  return {
    seq, previous, classes: [{ name: 'public', maxShareBytes: 1 << 20 }, { name: 'encrypted-private', maxShareBytes: 0 }],
    maxShareBytes: 4 << 20, denyAdd: [denyEntry(Buffer.alloc(32, seq))], denyRemove: [], name: 'fuzz moderator',
    approveAdd: [{ manifestId: Buffer.alloc(32, 20 + seq), contentClass: 'public', tags: ['art', 'video'] }], approveRemove: [],
    allowAdd: [denyEntry(Buffer.alloc(32, 40 + seq))], allowRemove: [],
  };
}
const policyWindow = { validAfter: NOW - 3600_000, validUntil: NOW + 86_400_000 };
function policySeeds(): { v1: Buffer; v2: Buffer; bundle: Buffer } {
  const v1 = signPolicy(policyContent(1, null), moderator, policyWindow);
  const d1 = verifyPolicyVersion(v1).digest;
  const v2 = signPolicy(policyContent(2, d1), moderator, policyWindow);
  return { v1, v2, bundle: encodeBundle([v1, v2]) };
}
function signPolicyContent(content: Buffer): Buffer {
  return signDocument({ type: DocType.POLICY, validAfter: policyWindow.validAfter, validUntil: policyWindow.validUntil, content }, { identity: moderator.publicKey, keyPair: moderator });
}

// ---- key files: written to a private temporary folder, read back by the real loaders ----

let keyDir: string | null = null;
/**
 * The folder a run's key files go in: inside FUZZ_TMP_ENV when the runner set it (run.ts makes
 * one per run and removes it at the end, whatever happened to the workers: a worker replaced
 * after a hang is terminated before it can clean up), else a folder of its own.
 */
export const FUZZ_TMP_ENV = 'BITCLOUD_FUZZ_TMP';
function keyFile(name: string): string {
  keyDir ??= fs.mkdtempSync(path.join(process.env[FUZZ_TMP_ENV] || os.tmpdir(), 'bitcloud-fuzz-keys-'));
  return path.join(keyDir, name);
}
async function keyFileSeeds(): Promise<Buffer[]> {
  const a = keyFile('seed-ed'), b = keyFile('seed-x');
  await saveEd25519Secret(a, relayKey);
  await saveX25519Secret(b, { secretKey: Buffer.alloc(32, 3), publicKey: onion }, NOW);
  return [tag(0, fs.readFileSync(a)), tag(1, fs.readFileSync(b))];
}
let keySeedCache: Buffer[] | null = null;

// ---- the registry ----

export const TARGETS: FuzzTarget[] = [
  {
    name: 'cell',
    about: 'link byte stream → CellAssembler / decodeCell → every link-level payload decoder',
    seeds: cellSeeds,
    maxLen: 3 * CELL_LEN,
    decode(bytes) {
      const a = new CellAssembler();
      let off = 0;
      const out: unknown[] = [];
      while (off < bytes.length) {
        off = a.take(bytes, off);
        if (!a.complete) break;
        const c = a.parse();
        const f = cellPayloadDecoders[c.command];
        if (c.command === CellCommand.RELAY || c.command === CellCommand.RELAY_EARLY) {
          const r = decodeRelayPayload(c.payload);
          out.push(relayBody(r.command, r.data));
        } else if (f) out.push(f(c.payload));
      }
      if (bytes.length >= CELL_LEN) out.push(decodeCell(bytes.subarray(0, CELL_LEN)));
      return out;
    },
  },
  {
    name: 'relay-msg',
    about: 'decrypted relay payload (509 bytes) → decodeRelayPayload → BEGIN/END/CONNECTED/SENDME/RESOLVED/EXTEND2/… bodies',
    seeds: () => relaySeedBodies().map(([c, s, d]) => encodeRelayPayload(c, s, d)),
    maxLen: CELL_PAYLOAD_LEN,
    decode(bytes) {
      const r = decodeRelayPayload(payload509(bytes));
      return relayBody(r.command, r.data);
    },
  },
  {
    name: 'relay-body',
    about: 'relay message bodies of any length (selector byte picks the decoder)',
    seeds: () => relaySeedBodies().map(([c, , d]) => tag(Object.values(RelayCommand).indexOf(c as never), d)),
    maxLen: 600,
    decode: (bytes) => pick(bytes, Object.values(RelayCommand).map((c) => (d: Buffer) => relayBody(c, d))),
  },
  {
    name: 'link-handshake',
    about: 'VERSIONS, AUTHENTICATE (decode + verify against a TLS binding), CREATE2/CREATED2, DESTROY, RECEIPT_REQUEST',
    seeds: () => [
      tag(0, encodeVersions([1, 2])),
      tag(1, makeAuthenticate(AuthRole.INITIATOR, relayKey, binding)),
      tag(1, encodeAuthenticate({ ...decodeAuthenticate(makeAuthenticate(AuthRole.RESPONDER, relayKey, binding)) })),
      tag(2, encodeCreate2({ htype: 2, hdata: Buffer.alloc(84, 1) })),
      tag(3, encodeCreated2({ hdata: Buffer.alloc(64, 2) })),
      tag(4, encodeDestroy(1)),
      tag(5, encodeReceiptRequest({ epoch: 7, reason: 'CLOSING' })),
    ],
    maxLen: CELL_PAYLOAD_LEN + 1,
    decode: (bytes) => pick(bytes, [
      (b) => negotiateVersion(SUPPORTED_LINK_VERSIONS, decodeVersions(b)),
      (b) => verifyAuthenticate(decodeAuthenticate(b), AuthRole.INITIATOR, binding, relayKey.publicKey),
      decodeCreate2, decodeCreated2, decodeDestroy, decodeReceiptRequest,
    ]),
  },
  {
    name: 'socks',
    about: 'SOCKS5 greeting, RFC 1929 username/password, CONNECT request (partial reads allowed)',
    seeds: () => [
      tag(0, Buffer.from([5, 2, 0, 2])),
      tag(1, Buffer.from([1, 4, ...Buffer.from('user'), 4, ...Buffer.from('pass')])),
      tag(2, Buffer.from([5, 1, 0, 3, 11, ...Buffer.from('example.com'), 1, 187])),
      tag(2, Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, 0, 80])),
      tag(2, Buffer.from([5, 1, 0, 4, ...Buffer.alloc(15), 1, 0, 80])),
    ],
    maxLen: 600,
    decode: (bytes) => pick(bytes, [parseGreeting, parseUserPass, parseRequest]),
  },
  {
    name: 'descriptor',
    about: 'a relay descriptor envelope as uploaded (POST /bitcloud/descriptor): verifyDescriptor',
    seeds: () => [descriptorRaw(relayKey, 1), descriptorRaw(relayKey, 2, { exit: true }), descriptorRaw(relayKey, 3, { storage: true })],
    maxLen: LIMITS.descriptorBytes + 64,
    decode: (bytes) => verifyDescriptor(bytes, { now: PS }),
  },
  {
    name: 'descriptor-content',
    about: 'RelayDescriptor content, re-signed with the key it names, then verifyDescriptor (every field check)',
    seeds: () => [1, 2, 3].map((i) => contentOf(descriptorRaw(relayKey, i, { exit: i === 2, storage: i === 3 }), LIMITS.descriptorBytes)),
    maxLen: LIMITS.descriptorBytes,
    decode(bytes) {
      const c = decodeRelayDescriptor(bytes);
      return verifyDescriptor(signDescriptorContent(encodeRelayDescriptor({ ...c, identity: relayKey.publicKey })), { now: PS });
    },
  },
  {
    name: 'certificate',
    about: 'authority key certificates (verifyKeyCertificate, indexCertificates)',
    seeds: () => auths().map((a) => a.signer.certificate),
    maxLen: LIMITS.certificateBytes + 64,
    decode: (bytes) => { indexCertificates([bytes], NOW, 0); return verifyKeyCertificate(bytes, NOW); },
  },
  {
    name: 'vote',
    about: 'a vote envelope as fetched from another authority: verifyVote',
    seeds: () => [voteRaw()],
    maxLen: 8192,
    decode: (bytes) => verifyVote(bytes, authList(), { periodStart: PS, periodSeconds: PERIOD }),
  },
  {
    name: 'vote-content',
    about: 'Vote content re-signed by a configured authority, then verifyVote (entries, descriptors inside)',
    seeds: () => [contentOf(voteRaw(), LIMITS.voteBytes)],
    maxLen: 8192,
    decode(bytes) {
      const v = decodeVote(bytes);
      return verifyVote(signVoteContent(encodeVote({ ...v, authority: auths()[0].id.publicKey })), authList(), { periodStart: PS, periodSeconds: PERIOD });
    },
  },
  {
    name: 'consensus',
    about: 'a consensus envelope as fetched by clients and relays: verifyConsensus',
    seeds: () => [consensusRaw()],
    maxLen: 8192,
    decode: (bytes) => verifyConsensus(bytes, authList(), PS + 1000),
  },
  {
    name: 'consensus-content',
    about: 'Consensus content signed by a majority of authorities, then verifyConsensus (indexes, sorting, columns)',
    seeds: () => [contentOf(consensusRaw(), LIMITS.consensusBytes)],
    maxLen: 8192,
    decode(bytes) {
      decodeConsensus(bytes);
      return verifyConsensus(signConsensusContent(bytes), authList(), PS + 1000);
    },
  },
  {
    name: 'signatures',
    about: 'detached consensus signatures exchanged between authorities (decodeDetachedSignatures + certificates)',
    seeds: () => {
      const raw = consensusRaw();
      const env = decodeEnvelope(raw, LIMITS.consensusBytes);
      return [encodeDetachedSignatures({ digest: Buffer.alloc(32, 1), signatures: env.signatures, certificates: env.certificates })];
    },
    maxLen: LIMITS.signaturesBytes + 64,
    decode(bytes) {
      const d = decodeDetachedSignatures(bytes);
      const certs = indexCertificates(d.certificates, NOW, 60_000);
      return [d.signatures.map((s) => fingerprint(s.signer)), certs.size];
    },
  },
  {
    name: 'receipt',
    about: 'receipt body, proposal, countersigned receipt, reject, batch (decode + signature checks)',
    seeds: () => {
      const r = aReceipt();
      return [
        tag(0, encodeReceiptBody(receiptBody(3))), tag(1, encodeReceiptProposal(r)), tag(2, encodeReceipt(r)),
        tag(3, encodeReceiptReject({ epoch: 5, serial: 2, reason: 'COUNTS_MISMATCH', cellsI2R: 1, cellsR2I: 2, tolerance: 3 } as never)),
        tag(4, encodeReceiptBatch([r, r])), tag(5, encodeReceipt(r)),
      ];
    },
    maxLen: 2048,
    decode: (bytes) => pick(bytes, [
      decodeReceiptBody, decodeReceiptProposal, (b) => verifyReceipt(decodeReceipt(b)), decodeReceiptReject,
      (b) => decodeReceiptBatch(b, 8).map(verifyReceipt),
      (b) => acceptCountersign(aReceipt(), b),
    ]),
  },
  {
    name: 'receipt-upload',
    about: 'the authority HTTP body of POST /bitcloud/receipts (answerReceiptUpload with a ReceiptVerifier)',
    seeds: () => [encodeReceiptBatch([aReceipt()]), encodeReceiptBatch([aReceipt(), aReceipt()])],
    maxLen: 2048,
    decode(bytes) {
      const v = new ReceiptVerifier({
        membership: (_e, fp) => fp === relayKey.publicKey.toString('hex') || fp === otherRelay.publicKey.toString('hex'),
        window: periodicUploadWindow({ genesisMs: 0, periodMs: PERIOD * 1000, graceMs: 60_000 }),
      });
      return answerReceiptUpload(v, bytes, 30_000_000 * PERIOD * 1000 + 1000);
    },
  },
  {
    name: 'authority-answer',
    about: 'JSON answers of the authority HTTP API as nodes read them (receipt upload, policy upload, error bodies)',
    seeds: () => {
      const statuses = [200, 400, 413, 500];
      const bodies = [
        { status: 200, body: { accepted: 2, refused: [] } },
        { status: 200, body: { accepted: 1, refused: [{ index: 1, code: 'RECEIPT_REPLAYED', reason: 'already accepted' }] } },
        { status: 400, body: { code: 'RECEIPT_MALFORMED', reason: 'a receipt upload is a positive multiple of 224 bytes' } },
        { status: 200, body: { accepted: true, result: 'updated', seq: 3 } },
        { status: 400, body: { code: 'POLICY_REPLAYED', reason: 'older' } },
      ];
      const out: Buffer[] = [];
      for (let sel = 0; sel < 3; sel++) for (const b of bodies) out.push(Buffer.concat([Buffer.from([sel, statuses.indexOf(b.status)]), Buffer.from(JSON.stringify(b.body))]));
      return out;
    },
    maxLen: 1024,
    decode(bytes) {
      if (bytes.length < 2) return null;
      const r = { status: [200, 400, 413, 500, 429, 404][bytes[1] % 6], headers: {}, body: bytes.subarray(2) };
      switch (bytes[0] % 3) {
        case 0: return uploadRefusals(r.status, r.body, 3);
        case 1: return policyUploadAnswer('http://127.0.0.1:1', r);
        default: return errorBodyReason(r);
      }
    },
  },
  {
    name: 'hs-pseudonym',
    about: 'hidden nodes\' pseudonym registration uploads, as a mirror checks and an authority opens them (decodePseudonymUpload + openPseudonymUpload, SPEC.md §9.21.7)',
    seeds: () => {
      const auth = ed25519FromSeed(Buffer.alloc(32, 0x51));
      const reg = makePseudonymRegistration(ed25519FromSeed(Buffer.alloc(32, 0x52)), ed25519FromSeed(Buffer.alloc(32, 0x53)), 20_000);
      return [sealPseudonymUpload(reg, [auth.publicKey]), sealPseudonymUpload(reg, [ed25519FromSeed(Buffer.alloc(32, 0x54)).publicKey, auth.publicKey]), encodePseudonymRegistration(reg)];
    },
    maxLen: 1200,
    decode(bytes) {
      decodePseudonymUpload(bytes);
      return openPseudonymUpload(bytes, ed25519FromSeed(Buffer.alloc(32, 0x51)));
    },
  },
  {
    name: 'reward-block',
    about: 'reward block bodies (decodeRewardBlock)',
    seeds: () => [rewardSeeds().block],
    maxLen: 4096,
    decode: decodeRewardBlock,
  },
  {
    name: 'reward-signed',
    about: 'signed reward blocks applied to a chain (applyRewardBlock: split, header, signatures, then the body decoded)',
    seeds: () => [rewardSeeds().signed],
    maxLen: 4096,
    decode: (bytes) => applyRewardBlock(emptyChainState(), bytes, rewardAuthorities(), 2),
  },
  {
    name: 'reward-bundle',
    about: 'the reward chain bundle served by authorities (decodeRewardChainBundle + verifyChain)',
    seeds: () => [rewardSeeds().bundle],
    maxLen: 8192,
    decode(bytes) {
      const b = decodeRewardChainBundle(bytes);
      return verifyChain(b.blocks, rewardAuthorities());
    },
  },
  {
    name: 'storage-frame',
    about: 'storage stream bytes → FrameDecoder → decodeRequest / decodeResponse',
    seeds: () => [...storageRequests().map((r) => tag(0, encodeFrame(r))), ...storageResponses().map((r) => tag(1, encodeFrame(r))),
      tag(0, Buffer.concat(storageRequests().map((r) => encodeFrame(r))))],
    maxLen: 4096,
    decode(bytes) {
      if (bytes.length === 0) return null;
      const dec = new FrameDecoder(1 << 16);
      const f = bytes[0] & 1 ? decodeResponse : decodeRequest;
      const body = bytes.subarray(1);
      // Feed it in uneven pieces, as a socket would.
      const out: unknown[] = [];
      for (let off = 0, step = 1 + (bytes[0] >> 1); off < body.length; off += step, step = step * 2 + 1) {
        for (const frame of dec.push(body.subarray(off, off + step))) out.push(f(frame));
      }
      return out;
    },
  },
  {
    name: 'storage-message',
    about: 'storage protocol messages without framing (decodeRequest, decodeResponse)',
    seeds: () => [...storageRequests().map((r) => tag(0, r)), ...storageResponses().map((r) => tag(1, r))],
    maxLen: 4096,
    decode: (bytes) => pick(bytes, [decodeRequest, decodeResponse]),
  },
  {
    name: 'manifest',
    about: 'manifests, root records and name values (decodeManifest, decodeRoot, decodeNameValue)',
    seeds: () => [
      tag(0, encodeManifest(makeManifest(layout(), { name: 'f.bin', contentType: 'application/octet-stream' }))),
      tag(1, encodeRoot({ version: 1, manifest: layout() })),
      tag(2, encodeNameValue({ manifestId: Buffer.alloc(32, 1), fileKey: Buffer.alloc(32, 2) })),
    ],
    maxLen: 4096,
    decode: (bytes) => pick(bytes, [decodeManifest, decodeRoot, decodeNameValue]),
  },
  {
    name: 'capability',
    about: 'capability and name text as pasted by users (parseCapability, parseName, parseDenyTarget)',
    seeds: () => {
      const cap = formatCapability({ manifestId: Buffer.alloc(32, 1), fileKey: Buffer.alloc(32, 2) });
      return [tag(0, Buffer.from(cap)), tag(1, Buffer.from(formatName({ publisher: relayKey.publicKey, label: 'site' } as never))),
        tag(2, Buffer.from(cap)), tag(2, Buffer.from('ab'.repeat(32)))];
    },
    maxLen: 512,
    decode: (bytes) => pick(bytes, [
      (b) => parseCapability(b.toString('utf8')), (b) => parseName(b.toString('utf8')), (b) => parseDenyTarget(b.toString('utf8')),
    ]),
  },
  {
    name: 'policy',
    about: 'a moderator policy version envelope (verifyPolicyVersion)',
    seeds: () => { const s = policySeeds(); return [s.v1, s.v2]; },
    maxLen: 4096,
    decode: (bytes) => verifyPolicyVersion(bytes, { moderator: modFp }),
  },
  {
    name: 'policy-content',
    about: 'policy content and denylists (decodePolicyContent, signed and verified; splitEntries)',
    seeds: () => [encodePolicyContent({ ...policyContent(1, null), moderator: moderator.publicKey }),
      encodePolicyContent({ ...policyContent(2, Buffer.alloc(32, 9)), moderator: moderator.publicKey })],
    maxLen: 4096,
    decode(bytes) {
      const c = decodePolicyContent(bytes);
      splitEntries(packEntries(c.denyAdd), 'deny_add');
      return verifyPolicyVersion(signPolicyContent(encodePolicyContent({ ...c, moderator: moderator.publicKey })), { moderator: modFp });
    },
  },
  {
    name: 'policy-bundle',
    about: 'the authority HTTP body of POST /bitcloud/policy/<moderator> (PolicyStore.accept) and DHT heads',
    seeds: () => { const s = policySeeds(); return [tag(0, s.bundle), tag(0, encodeBundle([s.v1])), tag(1, encodeHead({ digest: Buffer.alloc(32, 1), length: 2000, parts: [Buffer.alloc(20, 1), Buffer.alloc(20, 2), Buffer.alloc(20, 3)] }))]; },
    maxLen: 8192,
    decode: (bytes) => pick(bytes, [
      (b) => new PolicyStore(null, { now: () => NOW }).accept(modFp, b),
      decodeHead,
      (b) => { const env = decodeBundle(b); return advancePolicy(null, env, { moderator: modFp, now: NOW }); },
    ]),
  },
  {
    name: 'denylist',
    about: 'packed denylist entries (splitEntries)',
    seeds: () => [packEntries([denyEntry(Buffer.alloc(32, 1)), denyEntry(Buffer.alloc(32, 2))])],
    maxLen: 1024,
    decode: (bytes) => splitEntries(bytes, 'deny_add'),
  },
  {
    name: 'key-file',
    about: 'Ed25519 and X25519 key files read from disk (loadEd25519Secret, readX25519SecretFile)',
    seeds: () => keySeedCache ?? [],
    maxLen: 256,
    async decode(bytes) {
      if (bytes.length === 0) return null;
      const f = keyFile('k');
      fs.writeFileSync(f, bytes.subarray(1), { mode: 0o600 });
      return bytes[0] & 1 ? await readX25519SecretFile(f) : await loadEd25519Secret(f);
    },
  },
];

/** Work that must happen before seeds() of some targets (async fixtures). */
export async function prepareTargets(): Promise<void> {
  keySeedCache ??= await keyFileSeeds();
}

export function cleanupTargets(): void {
  if (keyDir) fs.rmSync(keyDir, { recursive: true, force: true });
  keyDir = null;
}

export function targetByName(name: string): FuzzTarget | undefined {
  return TARGETS.find((t) => t.name === name);
}

// Silence "unused" for decoders only reached through tables above.
void decodeEnvelope; void decodeDocumentBody; void CELL_LEN; void PS;
