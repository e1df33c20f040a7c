import fs from 'node:fs';
import path from 'node:path';
import { describe, it, expect } from 'vitest';
import {
  ALL_ERROR_CODES, ERROR_CODES, ERROR_KINDS, declaredCode, err, errorCode, isBitcloudError, isErrorCode, kindOf, layerOf,
  type ErrorCode, type ErrorKind,
} from '../../src/errors';
import {
  END_REASONS, ERRNO, UNSERVED_STREAM_REFUSAL, destroyReasonForExtendFailure, endReasonForBeginFailure, endReasonForErrno,
  endReasonForLookupErrno, endReasonName,
} from '../../src/circuit/end-reasons';
import { SOCKS_REPLY_FOR_CODE, socksReplyFor } from '../../src/client/socks5';
import { NO_PATH_YET } from '../../src/client/path';
import { SocksReply } from '../../src/wire/socks';
import { responseError } from '../../src/storage/protocol';
import { DestroyReason, EndReason } from '../../src/wire/messages';
import { RelayCommand } from '../../src/wire/relay-msg';
import { CellCommand } from '../../src/wire/cell';
import { RejectReason } from '../../src/bandwidth/receipt';

const root = path.resolve(__dirname, '../..');

/**
 * Node's own error codes the sources compare with (node:zlib, node:tls, node:stream, node:http and
 * its parser), each named: a prefix rule (any ERR_* or HPE_*) would let a code of ours spelt so pass
 * undeclared. A new Node code the sources test for is added here.
 */
const NODE_CODES = new Set<string>([
  'ERR_BUFFER_TOO_LARGE', 'ERR_HTTP_REQUEST_TIMEOUT', 'ERR_STREAM_DESTROYED', 'ERR_TLS_HANDSHAKE_TIMEOUT', 'HPE_HEADER_OVERFLOW',
]);

/** Upper-case words with an underscore that are not error codes: wire names and system errors. */
const NOT_CODES = new Set<string>([
  ...Object.keys(SocksReply), ...Object.keys(DestroyReason), ...Object.keys(EndReason), ...Object.keys(RelayCommand),
  ...Object.keys(CellCommand), ...Object.keys(RejectReason), ...Object.keys(ERRNO),
  'NO_ANSWER', 'BAD_COUNTERSIGN', // link-receipt disagreements (SPEC.md §8.3), reported beside RejectReason
  ...NODE_CODES,
]);

/** The quoted code-like words of a source text that are neither declared codes nor listed as not ours. */
function undeclaredCodes(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/'([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)'/g)) if (!isErrorCode(m[1]) && !NOT_CODES.has(m[1])) out.push(m[1]);
  return out;
}

/** Every code with its layer and kind, as docs/errors.md lists them. */
function documented(): Map<string, { layer: string; kind: string }> {
  const out = new Map<string, { layer: string; kind: string }>();
  let layer = '';
  for (const line of fs.readFileSync(path.join(root, 'docs/errors.md'), 'utf8').split('\n')) {
    const h = /^## ([A-Z]+)$/.exec(line);
    if (h) { layer = h[1]; continue; }
    const row = /^\| `([A-Z][A-Z0-9_]*)` \| ([a-z_]+) \| (.+) \|$/.exec(line);
    if (row && layer) {
      expect(out.has(row[1]), `${row[1]} listed twice in docs/errors.md`).toBe(false);
      expect(row[3].trim().length, `${row[1]} has no explanation`).toBeGreaterThan(10);
      out.set(row[1], { layer, kind: row[2] });
    }
  }
  return out;
}

describe('errors', () => {
  it('carry a stable code', () => {
    const e = err('CELL_MALFORMED', 'bad');
    expect(isBitcloudError(e, 'CELL_MALFORMED')).toBe(true);
    expect(errorCode(e)).toBe('CELL_MALFORMED');
    expect(errorCode(new Error('x'))).toBe('INTERNAL');
    // Metrics labels keep a system error code of a non-Bitcloud error.
    expect(errorCode(Object.assign(new Error('x'), { code: 'ECONNREFUSED' }))).toBe('ECONNREFUSED');
    expect(declaredCode(Object.assign(new Error('x'), { code: 'ECONNREFUSED' }))).toBe('INTERNAL');
    expect(declaredCode(e)).toBe('CELL_MALFORMED');
  });

  it('every code is declared once, in one layer, with a kind; the kinds and layers are as listed', () => {
    const seen = new Map<string, string>();
    for (const [layer, codes] of Object.entries(ERROR_CODES)) {
      for (const [code, kind] of Object.entries(codes)) {
        expect(seen.get(code), `${code} in ${layer} and ${seen.get(code)}`).toBeUndefined();
        seen.set(code, layer);
        expect(code).toMatch(/^[A-Z][A-Z0-9_]{0,63}$/); // fits a storage error answer (SPEC.md §9.6.4)
        expect(ERROR_KINDS).toContain(kind);
        expect(kindOf(code as ErrorCode)).toBe(kind);
        expect(layerOf(code as ErrorCode)).toBe(layer);
        expect(isErrorCode(code)).toBe(true);
      }
    }
    expect([...seen.keys()]).toEqual([...ALL_ERROR_CODES]);
    expect(ALL_ERROR_CODES.length).toBeGreaterThan(200);
    expect(isErrorCode('NO_SUCH_CODE')).toBe(false);
    expect(isErrorCode('ECONNREFUSED')).toBe(false);
    expect(isErrorCode(undefined)).toBe(false);
    // Every kind is used.
    const kinds = new Set<ErrorKind>(ALL_ERROR_CODES.map(kindOf));
    expect([...kinds].sort()).toEqual([...ERROR_KINDS].sort());
  });

  it('the code table (code → kind) is the one docs/errors.md lists, for every code', () => {
    const docs = documented();
    const table = ALL_ERROR_CODES.map((c) => `${c} ${layerOf(c)} ${kindOf(c)}`);
    const listed = [...docs].map(([c, v]) => `${c} ${v.layer} ${v.kind}`);
    expect(listed.sort()).toEqual(table.sort());
  });

  it('no undeclared code is written anywhere in the sources', () => {
    const undeclared: string[] = [];
    const walk = (dir: string): void => {
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) { walk(p); continue; }
        if (!p.endsWith('.ts') || p === path.join(root, 'src/errors.ts')) continue;
        for (const w of undeclaredCodes(fs.readFileSync(p, 'utf8'))) undeclared.push(`${path.relative(root, p)}: ${w}`);
      }
    };
    for (const d of ['src', 'relay', 'directory', 'storage']) walk(path.join(root, d));
    expect(undeclared).toEqual([]);
  });

  it('the scan passes only the Node codes it lists: a code of ours spelt ERR_ or HPE_ is still reported', () => {
    expect(undeclaredCodes("e.code === 'ERR_TLS_HANDSHAKE_TIMEOUT' || e.code === 'HPE_HEADER_OVERFLOW'")).toEqual([]);
    expect(undeclaredCodes("log.warn({ code: 'ERR_LINK_GONE' }); fail('HPE_OURS_TOO')")).toEqual(['ERR_LINK_GONE', 'HPE_OURS_TOO']);
    expect(undeclaredCodes("'LINK_TLS_FAILED' 'NO_SUCH_CODE'")).toEqual(['NO_SUCH_CODE']);
  });
});

describe('reason tables', () => {
  it('END_REASONS covers every END reason, by number and by name', () => {
    for (const [name, n] of Object.entries(EndReason)) {
      expect(endReasonName(n)).toBe(name);
      expect(endReasonName(name.toLowerCase())).toBe(name);
      expect(isErrorCode(END_REASONS[name as keyof typeof EndReason].code)).toBe(true);
    }
    expect(endReasonName(0)).toBeUndefined();
    expect(endReasonName(99)).toBeUndefined();
    expect(endReasonName('garbage')).toBeUndefined();
  });

  it('the SOCKS reply comes from END_REASONS, then ERRNO, then SOCKS_REPLY_FOR_CODE, else 0x01', () => {
    for (const [name, n] of Object.entries(EndReason)) {
      const want = SocksReply[END_REASONS[name as keyof typeof EndReason].socks];
      expect(socksReplyFor(err('STREAM_REFUSED', 'm', { endReason: n }))).toBe(want);
      expect(socksReplyFor(err('PATH_NO_EXIT', 'm', { reason: name }))).toBe(want); // the END reason wins over the code
    }
    for (const [errno, row] of Object.entries(ERRNO)) {
      expect(socksReplyFor(Object.assign(new Error('x'), { code: errno }))).toBe(SocksReply[row.socks]);
    }
    for (const code of ALL_ERROR_CODES) {
      const want = SocksReply[SOCKS_REPLY_FOR_CODE[code] ?? 'GENERAL_FAILURE'];
      expect(socksReplyFor(err(code, 'm')), code).toBe(want);
      // Every timeout gives "TTL expired"; nothing else does by its code alone.
      expect(want === SocksReply.TTL_EXPIRED, code).toBe(kindOf(code) === 'timeout');
    }
    // SPEC.md §7.8.4: every "the client cannot build a circuit" code is "network unreachable".
    expect([...NO_PATH_YET].sort()).toEqual(['CIRCUIT_NO_CONSENSUS', 'PATH_NO_GUARD', 'PATH_NO_MIDDLE', 'PATH_NO_RELAYS']);
    for (const code of NO_PATH_YET) {
      expect(socksReplyFor(err(code, 'm')), code).toBe(SocksReply.NETWORK_UNREACHABLE);
    }
  });

  it('ERRNO gives the END reason of a failed connect and of a failed lookup', () => {
    for (const [errno, row] of Object.entries(ERRNO)) expect(endReasonForErrno(errno)).toBe(EndReason[row.end]);
    expect(endReasonForErrno('EWHATEVER')).toBe(EndReason.MISC);
    expect(endReasonForErrno(undefined)).toBe(EndReason.MISC);
    expect(endReasonForLookupErrno('ETIMEDOUT')).toBe(EndReason.TIMEOUT);
    for (const c of ['ENOTFOUND', 'EAI_AGAIN', 'ECONNREFUSED', 'ESERVFAIL', undefined]) expect(endReasonForLookupErrno(c)).toBe(EndReason.RESOLVEFAILED);
  });

  it('refusals by stream kind, by failed BEGIN and by failed EXTEND2 come from tables', () => {
    expect(UNSERVED_STREAM_REFUSAL).toEqual({ begin: EndReason.EXITPOLICY, begin_dir: EndReason.NOTDIRECTORY, begin_storage: EndReason.MISC });
    expect(endReasonForBeginFailure('STREAM_LIMIT')).toBe(EndReason.RESOURCELIMIT);
    for (const c of ['STREAM_ID_IN_USE', 'MSG_MALFORMED', 'MSG_TRUNCATED', 'INTERNAL', 'ECONNRESET']) {
      expect(endReasonForBeginFailure(c)).toBe(EndReason.TORPROTOCOL);
    }
    for (const c of ['LINK_IDENTITY_MISMATCH', 'EXTEND_IDENTITY_UNKNOWN', 'EXTEND_ADDRESS_MISMATCH']) {
      expect(destroyReasonForExtendFailure(c)).toBe(DestroyReason.OR_IDENTITY);
    }
    for (const c of ['LINK_CONNECT_FAILED', 'LINK_TLS_FAILED', 'LINK_HANDSHAKE_TIMEOUT', 'ECONNREFUSED', 'INTERNAL']) {
      expect(destroyReasonForExtendFailure(c)).toBe(DestroyReason.CONNECTFAILED);
    }
  });

  it('a storage node answering a code outside the set gives STORAGE_REMOTE_UNKNOWN', () => {
    const known = responseError({ type: 'error', code: 'STORAGE_FULL', message: 'full' });
    expect(known.code).toBe('STORAGE_FULL');
    const unknown = responseError({ type: 'error', code: 'FUTURE_THING', message: 'new' });
    expect(unknown.code).toBe('STORAGE_REMOTE_UNKNOWN');
    expect(unknown.detail).toMatchObject({ remote: true, remoteCode: 'FUTURE_THING' });
  });
});
