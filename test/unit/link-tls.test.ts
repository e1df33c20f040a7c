// SPEC.md §1.2: the link certificate — self-signed ECDSA P-256, no identity in it.
import { describe, it, expect } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { sha256 } from '../../src/crypto/primitives';
import { certificateHash, credentialsFromPem, generateTlsCredentials } from '../../src/crypto/tls';

describe('link TLS credentials (SPEC.md §1.2)', () => {
  it('are a self-signed ECDSA P-256 certificate whose hash is SHA-256 of its DER', async () => {
    const c = await generateTlsCredentials();
    const x = new X509Certificate(c.certPem);
    expect(x.raw.equals(c.certDer)).toBe(true);
    expect(c.certHash.equals(sha256(c.certDer))).toBe(true);
    expect(certificateHash(c.certDer).equals(c.certHash)).toBe(true);
    expect(x.publicKey.asymmetricKeyType).toBe('ec');
    expect(x.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(x.verify(x.publicKey)).toBe(true);
    expect(x.checkIssued(x)).toBe(true);
    expect(x.subject).toBe('CN=bitcloud');
    expect(new Date(x.validTo).getTime()).toBeGreaterThan(Date.now());
    expect(new Date(x.validFrom).getTime()).toBeLessThan(Date.now());
  });

  it('are fresh each time (no identity, nothing stable to track)', async () => {
    const [a, b] = await Promise.all([generateTlsCredentials(), generateTlsCredentials()]);
    expect(a.certHash.equals(b.certHash)).toBe(false);
    expect(new X509Certificate(a.certPem).serialNumber).not.toBe(new X509Certificate(b.certPem).serialNumber);
  });

  it('load from PEM, and a bad PEM is LINK_TLS_FAILED', async () => {
    const c = await generateTlsCredentials();
    expect(credentialsFromPem(c.keyPem, c.certPem).certHash.equals(c.certHash)).toBe(true);
    expect(() => credentialsFromPem(c.keyPem, 'nonsense')).toThrow(expect.objectContaining({ code: 'LINK_TLS_FAILED' }));
  });
});
