// SPEC.md §6.4: relay descriptors. A relay (or storage node) signs its descriptor with its
// identity key and uploads it to every authority. Authorities verify it into a
// VerifiedDescriptor before anything else looks at it.
import { err } from '../errors';
import type { Ed25519KeyPair } from '../crypto/primitives';
import { fingerprint } from '../crypto/keys';
import { decodeRelayDescriptor, encodeRelayDescriptor, LIMITS, type IdentityProofMsg } from '../wire/docs';
import { checkWindow, DocType, openEnvelope, signDocument, verifyBodySignature } from '../wire/envelope';
import { formatIPv4, parseExitPolicy, parseIPv4 } from './exit-policy';
import { ROLE_BITS, rolesFromMask, rolesToMask, type Role } from './types';

/** SPEC.md §6.4: a descriptor may claim at most this long a lifetime. */
export const DESCRIPTOR_MAX_LIFETIME_MS = 7 * 24 * 3600_000;
/**
 * SPEC.md §6.4 check 8: an authority refuses a descriptor published longer ago than this
 * (DOC_EXPIRED), as Tor's ROUTER_MAX_AGE_TO_PUBLISH.
 */
export const DESCRIPTOR_MAX_AGE_TO_PUBLISH_MS = 24 * 3600_000;
/**
 * SPEC.md §6.4: a node republishes at least this often (`publishIntervalSeconds` at most), so the
 * descriptor it retries to a failed authority until its next round is never past the age above.
 */
export const DESCRIPTOR_MAX_PUBLISH_INTERVAL_MS = 18 * 3600_000;
/** Default lifetime a relay gives its descriptor (it republishes well before). */
export const DESCRIPTOR_DEFAULT_LIFETIME_MS = 24 * 3600_000;

export interface DescriptorInput {
  identity: Ed25519KeyPair;
  onionKey: Buffer;
  nickname: string;
  address: string;
  orPort: number;
  dirPort?: number;
  storagePort?: number;
  /** Bytes per second. */
  declaredBandwidth: number;
  exitPolicy?: string[];
  /** Fingerprints. */
  family?: string[];
  roles: Role[];
  /** Moderator key fingerprints. */
  moderators?: string[];
  version: string;
  /** ms since the epoch; becomes valid_after. */
  published: number;
  lifetimeMs?: number;
  /** SPEC.md §6.4.1: the identity's proof of work (src/dir/identity-pow.ts). */
  identityProof?: IdentityProofMsg;
}

export interface VerifiedDescriptor {
  identity: Buffer;
  fingerprint: string;
  onionKey: Buffer;
  nickname: string;
  address: string;
  addressBytes: Buffer;
  orPort: number;
  dirPort: number;
  storagePort: number;
  declaredBandwidth: number;
  /** As the relay signed it. */
  exitPolicy: string[];
  family: string[];
  roles: Role[];
  rolesMask: number;
  moderators: string[];
  version: string;
  published: number;
  expires: number;
  /** SHA-256 of the signed body. */
  digest: Buffer;
  /** Envelope bytes as received. */
  raw: Buffer;
  /** SPEC.md §6.4.1: absent when the descriptor carries none (authorities that require one refuse it). */
  identityProof?: IdentityProofMsg;
}

function fpBytes(fp: string, what: string): Buffer {
  if (!/^[0-9a-f]{64}$/.test(fp)) throw err('DOC_MALFORMED', `${what}: not a fingerprint: ${fp}`);
  return Buffer.from(fp, 'hex');
}

/** Build and sign a descriptor envelope. */
export function buildDescriptor(d: DescriptorInput): Buffer {
  const addr = parseIPv4(d.address);
  if (addr === null) throw err('DOC_MALFORMED', `descriptor address must be IPv4: ${d.address}`);
  const addrBytes = Buffer.alloc(4);
  addrBytes.writeUInt32BE(addr >>> 0);
  const self = d.identity.publicKey.toString('hex');
  const content = encodeRelayDescriptor({
    identity: d.identity.publicKey,
    onionKey: d.onionKey,
    nickname: d.nickname,
    address: addrBytes,
    orPort: d.orPort,
    dirPort: d.dirPort ?? 0,
    storagePort: d.storagePort ?? 0,
    declaredBandwidth: d.declaredBandwidth,
    exitPolicy: d.exitPolicy ?? [],
    // SPEC.md §6.4: a node leaves itself out of its family (readers refuse a family naming the
    // relay itself), so an operator can give every node the same list.
    family: [...new Set(d.family ?? [])].filter((f) => f !== self).sort().map((f) => fpBytes(f, 'family')),
    roles: rolesToMask(d.roles),
    moderators: [...new Set(d.moderators ?? [])].sort().map((f) => fpBytes(f, 'moderators')),
    version: d.version,
    identityProof: d.identityProof,
  });
  const lifetime = d.lifetimeMs ?? DESCRIPTOR_DEFAULT_LIFETIME_MS;
  const doc = { type: DocType.RELAY_DESCRIPTOR, validAfter: d.published, validUntil: d.published + lifetime, content };
  return signDocument(doc, { identity: d.identity.publicKey, keyPair: d.identity });
}

/**
 * SPEC.md §6.4: verify a descriptor envelope. Refusals: DOC_TOO_LARGE, DOC_MALFORMED,
 * DOC_WRONG_TYPE, DOC_BAD_SIGNATURE, DOC_WRONG_SIGNER, DOC_EXPIRED, DOC_NOT_YET_VALID.
 * `now` undefined skips the window check (a vote re-checks descriptors against its period).
 */
export function verifyDescriptor(raw: Uint8Array, opts: { now?: number; skewMs?: number } = {}): VerifiedDescriptor {
  const doc = openEnvelope(raw, DocType.RELAY_DESCRIPTOR, LIMITS.descriptorBytes);
  const c = decodeRelayDescriptor(doc.content);
  if (doc.signatures.length !== 1) throw err('DOC_BAD_SIGNATURE', `a descriptor carries exactly one signature, not ${doc.signatures.length}`);
  const s = doc.signatures[0];
  if (!s.signer.equals(c.identity) || s.key !== null) {
    throw err('DOC_WRONG_SIGNER', 'descriptor is not signed by the identity key it describes', { signer: fingerprint(s.signer) });
  }
  if (!verifyBodySignature(doc.body, s.signature, c.identity)) throw err('DOC_BAD_SIGNATURE', 'descriptor signature does not verify');
  if (doc.validUntil - doc.validAfter > DESCRIPTOR_MAX_LIFETIME_MS) {
    throw err('DOC_MALFORMED', 'descriptor lifetime exceeds 7 days', { field: 'body.valid_until' });
  }
  if (opts.now !== undefined) checkWindow(doc, opts.now, opts.skewMs ?? 0, 'descriptor');
  let rules: number;
  try {
    rules = parseExitPolicy(c.exitPolicy).rules.length;
  } catch (e) {
    throw err('DOC_MALFORMED', `descriptor.exit_policy: ${(e as Error).message}`, { field: 'descriptor.exit_policy' }, e);
  }
  // SPEC.md §6.4, §7.6.1: the limit is on rules, and an element may hold several; the consensus
  // lists the policy one rule per element under the same limit (§6.7.2).
  if (rules > LIMITS.exitPolicyRules) {
    throw err('DOC_MALFORMED', `descriptor.exit_policy: ${rules} rules, at most ${LIMITS.exitPolicyRules}`, { field: 'descriptor.exit_policy', rules });
  }
  // SPEC.md §6.4: a relay without the exit role publishes an empty exit_policy.
  if (!(c.roles & ROLE_BITS.exit) && c.exitPolicy.length > 0) {
    throw err('DOC_MALFORMED', 'descriptor.exit_policy: must be empty without the exit role', { field: 'descriptor.exit_policy' });
  }
  const family = c.family.map(fingerprint);
  if (family.includes(fingerprint(c.identity))) throw err('DOC_MALFORMED', 'descriptor.family: lists the relay itself', { field: 'descriptor.family' });
  if (new Set(family).size !== family.length) throw err('DOC_MALFORMED', 'descriptor.family: duplicate entry', { field: 'descriptor.family' });
  const moderators = c.moderators.map(fingerprint);
  if (new Set(moderators).size !== moderators.length) throw err('DOC_MALFORMED', 'descriptor.moderators: duplicate entry', { field: 'descriptor.moderators' });
  if (c.roles & ROLE_BITS.hidden) {
    // SPEC.md §9.21.1: a hidden storage node names no address and no port.
    if (c.roles !== (ROLE_BITS.storage | ROLE_BITS.hidden)) throw err('DOC_MALFORMED', 'descriptor.roles: hidden goes with storage only', { field: 'descriptor.roles' });
    if (c.address.readUInt32BE(0) !== 0 || c.orPort !== 0 || c.dirPort !== 0 || c.storagePort !== 0) {
      throw err('DOC_MALFORMED', 'descriptor: a hidden node lists address 0.0.0.0 and no ports', { field: 'descriptor.address' });
    }
  } else if (c.orPort === 0) {
    throw err('DOC_MALFORMED', 'descriptor.or_port: must be 1..65535', { field: 'descriptor.or_port' });
  } else if (c.roles & ROLE_BITS.storage && c.storagePort === 0) {
    throw err('DOC_MALFORMED', 'descriptor.storage_port: the storage role needs a storage port', { field: 'descriptor.storage_port' });
  }
  return {
    identity: c.identity,
    fingerprint: fingerprint(c.identity),
    onionKey: c.onionKey,
    nickname: c.nickname,
    address: formatIPv4(c.address.readUInt32BE(0)),
    addressBytes: c.address,
    orPort: c.orPort,
    dirPort: c.dirPort,
    storagePort: c.storagePort,
    declaredBandwidth: c.declaredBandwidth,
    exitPolicy: c.exitPolicy,
    family,
    roles: rolesFromMask(c.roles),
    rolesMask: c.roles,
    moderators,
    version: c.version,
    published: doc.validAfter,
    expires: doc.validUntil,
    digest: doc.digest,
    raw: doc.raw,
    identityProof: c.identityProof,
  };
}
