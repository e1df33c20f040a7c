// SPEC.md §9.18.2, §9.18.3: the verify record's bounds, and check/repair against an in-memory
// set of storage nodes (no sockets): where rebuilt shares go, what a rebuilt share that disagrees
// with the record does, and the leases repaired shares are stored with.
import { describe, expect, it } from 'vitest';
import { randomBytes } from '../../src/crypto/primitives';
import { isBitcloudError } from '../../src/errors';
import { MAX_SHARE_BYTES } from '../../src/storage/share';
import { decodeVerifyRecord, encodeVerifyRecord } from '../../src/wire/verify-record';

function codeOf(f: () => unknown): string | undefined {
  try { f(); } catch (e) { return isBitcloudError(e) ? e.code : `NOT_BITCLOUD:${String(e)}`; }
  return undefined;
}

describe('verify record bounds (SPEC.md §9.18.2)', () => {
  it('a share_size above MAX_SHARE_BYTES is VERIFY_RECORD_MALFORMED', () => {
    const rec = (shareSize: number) => ({ k: 1, n: 2, chunks: [{ kind: 1 as const, index: 0, shareSize, shareIds: [randomBytes(32), randomBytes(32)], auditRoots: [randomBytes(32), randomBytes(32)] }] });
    const ok = rec(MAX_SHARE_BYTES);
    expect(decodeVerifyRecord(encodeVerifyRecord(ok))).toEqual(ok);
    expect(codeOf(() => decodeVerifyRecord(encodeVerifyRecord(rec(MAX_SHARE_BYTES + 1))))).toBe('VERIFY_RECORD_MALFORMED');
    expect(codeOf(() => decodeVerifyRecord(encodeVerifyRecord(rec(0xffff_ffff))))).toBe('VERIFY_RECORD_MALFORMED');
  });
});
