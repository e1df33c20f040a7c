// SPEC.md §9.14.1: checking a BEP 44 item that a storage node fetched from the DHT on the client's
// behalf. The node is not trusted: the client checks that the item is for the key and salt it asked
// about, that its signature verifies under that key, and that its seq is not below the newest one
// this client has already seen for the name. Each failure has its own code.
import { err } from '../errors';
import { ed25519Sign, ed25519Verify, sha1, type Ed25519KeyPair } from '../crypto/primitives';
import type { DhtItem } from './protocol';
import { MAX_SEQ } from './name';

/** BEP 44: the target of a mutable item, SHA-1(public key ‖ salt) (SPEC.md §9.14). */
export function nameTarget(publisher: Uint8Array, salt: Uint8Array): Buffer {
  return sha1(publisher, salt);
}

/**
 * The BEP 44 signed bytes: the bencoded dictionary {salt, seq, v} without its outer `d`…`e`
 * (`4:salt` len `:` salt `3:seqi` seq `e1:v` len `:` v; no salt entry when the salt is empty).
 */
export function bep44SignedBytes(salt: Uint8Array, seq: number, v: Uint8Array): Buffer {
  const parts: Buffer[] = [];
  if (salt.length > 0) parts.push(Buffer.from(`4:salt${salt.length}:`, 'ascii'), Buffer.from(salt));
  parts.push(Buffer.from(`3:seqi${seq}e1:v${v.length}:`, 'ascii'), Buffer.from(v));
  return Buffer.concat(parts);
}

/** A signed item ready for a DhtPut. */
export function signDhtItem(keys: Ed25519KeyPair, salt: Buffer, value: Buffer, seq: number): DhtItem {
  if (!Number.isSafeInteger(seq) || seq < 0 || seq > MAX_SEQ) throw err('NAME_MALFORMED', 'sequence number out of range', { seq });
  return { publisher: Buffer.from(keys.publicKey), salt, value, seq, sig: ed25519Sign(bep44SignedBytes(salt, seq, value), keys.secretKey) };
}

/** True when `item.sig` verifies under `item.publisher` over the item's own salt, seq and value. */
export function dhtItemSignatureValid(item: DhtItem): boolean {
  return ed25519Verify(item.sig, bep44SignedBytes(item.salt, item.seq, item.value), item.publisher);
}

/**
 * SPEC.md §9.14 *Resolving*: true when `a` wins over `b`, two verified items for one target. The
 * higher seq wins; at an equal seq (the publisher signed two values under one seq) the greater
 * value, compared bytewise, then the greater signature, so that every reader of the same answers
 * picks the same item whatever order they arrived in (as IPNS breaks ties on the record bytes).
 */
export function itemWins(a: DhtItem, b: DhtItem): boolean {
  if (a.seq !== b.seq) return a.seq > b.seq;
  return (Buffer.compare(a.value, b.value) || Buffer.compare(a.sig, b.sig)) > 0;
}

/**
 * Accept a node's answer to a DhtGet for (publisher, salt) only if it is that item, validly signed,
 * and not older than `minSeq` (the newest seq this client has verified before). Errors:
 * NAME_WRONG_KEY, NAME_WRONG_SALT, NAME_BAD_SIGNATURE, NAME_SEQ_ROLLBACK.
 */
export function checkDhtAnswer(asked: { publisher: Buffer; salt: Buffer }, item: DhtItem, minSeq = -1): DhtItem {
  if (!item.publisher.equals(asked.publisher)) throw err('NAME_WRONG_KEY', 'the storage node answered with an item under another publisher key');
  if (!item.salt.equals(asked.salt)) throw err('NAME_WRONG_SALT', 'the storage node answered with an item under another salt (another name)');
  if (!dhtItemSignatureValid(item)) throw err('NAME_BAD_SIGNATURE', 'the item\'s signature does not verify under the publisher key');
  if (item.seq < minSeq) throw err('NAME_SEQ_ROLLBACK', `the storage node answered seq ${item.seq}, older than the seq ${minSeq} already seen for this name`, { seq: item.seq, seen: minSeq });
  return item;
}
