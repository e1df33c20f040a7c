// SPEC.md §6.3: an authority's keys. The long-term identity key certifies a medium-term
// signing key; `run` needs only the signing key and its certificate, so the identity key can
// be moved offline after `keygen` (and brought back to renew the certificate).
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { err, isBitcloudError } from '../src/errors';
import { ed25519Generate, type Ed25519KeyPair } from '../src/crypto/primitives';
import {
  DATA_DIR_MODE, fingerprint, IDENTITY_KEY_FILE, loadEd25519Secret, saveEd25519Secret,
} from '../src/crypto/keys';
import { writeFileAtomic, mkdirDurable } from '../src/ops/fsutil';
import { makeKeyCertificate, verifyKeyCertificate } from '../src/dir/certificate';
import type { Signer } from './vote';

export const SIGNING_KEY_FILE = 'signing.key';
export const SIGNING_CERT_FILE = 'signing.cert';
export const DEFAULT_CERT_DAYS = 90;

export interface KeygenResult {
  fingerprint: string;
  createdIdentity: boolean;
  certValidUntil: number;
}

/**
 * Create the identity key if missing (or load it from `identityFile`), then a fresh signing
 * key and a certificate for it valid from now for `certDays`.
 */
export async function authorityKeygen(dataDir: string, opts: { certDays?: number; identityFile?: string; now?: number } = {}): Promise<KeygenResult> {
  const now = opts.now ?? Date.now();
  const days = opts.certDays ?? DEFAULT_CERT_DAYS;
  await mkdirDurable(dataDir, DATA_DIR_MODE);
  const idFile = opts.identityFile ?? path.join(dataDir, IDENTITY_KEY_FILE);
  let identity: Ed25519KeyPair;
  let createdIdentity = false;
  try {
    identity = await loadEd25519Secret(idFile);
  } catch (e) {
    if (!isBitcloudError(e, 'KEY_NOT_FOUND') || opts.identityFile) throw e;
    identity = ed25519Generate();
    await saveEd25519Secret(idFile, identity);
    createdIdentity = true;
  }
  const signing = ed25519Generate();
  // Backdate a little so a certificate made now is usable on peers whose clocks lag.
  const validAfter = now - 3600_000;
  const validUntil = now + days * 86_400_000;
  const cert = makeKeyCertificate(identity, signing.publicKey, validAfter, validUntil);
  await saveEd25519Secret(path.join(dataDir, SIGNING_KEY_FILE), signing);
  await writeFileAtomic(path.join(dataDir, SIGNING_CERT_FILE), cert, 0o644);
  return { fingerprint: fingerprint(identity.publicKey), createdIdentity, certValidUntil: validUntil };
}

/** Load the signing key and certificate; check they match and the certificate is valid now. */
export async function loadAuthoritySigner(dataDir: string, now = Date.now()): Promise<Signer & { certValidUntil: number }> {
  const certFile = path.join(dataDir, SIGNING_CERT_FILE);
  if (!fs.existsSync(certFile)) {
    throw err('KEY_NOT_FOUND', `no signing certificate in ${dataDir}: run 'bitcloud-dirauth keygen --data-dir ${dataDir}' first`);
  }
  const signingKey = await loadEd25519Secret(path.join(dataDir, SIGNING_KEY_FILE));
  const certificate = await fsp.readFile(certFile);
  let cert;
  try {
    cert = verifyKeyCertificate(certificate, now);
  } catch (e) {
    throw err('KEY_CERT_INVALID', `signing certificate ${certFile}: ${(e as Error).message} (renew it with keygen)`, undefined, e);
  }
  if (!cert.signingKey.equals(signingKey.publicKey)) throw err('KEY_CERT_INVALID', `signing certificate ${certFile} certifies another key`);
  return { identity: cert.identity, signingKey, certificate, certValidUntil: cert.validUntil };
}
