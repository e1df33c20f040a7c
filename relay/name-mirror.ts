// SPEC.md §9.14.2: the name mirror's HTTP routes on a relay's directory mirror, reached by
// clients over a 3-hop circuit and BEGIN_DIR at this relay (so the relay sees a circuit, never
// the client's address):
//   POST /bitcloud/name              body: one name record (src/wire/name-record.ts)
//   GET  /bitcloud/name/<40 hex>     the record held for that BEP 44 target
// The store checks the layout and the signature, keeps the highest seq per target and forgets a
// record 2 hours after it was last stored. No per-sender limit exists beyond the relay's own
// circuit and stream limits (a circuit has no sender to count).
import type http from 'node:http';
import { errorCode, isBitcloudError } from '../src/errors';
import { readBody, sendJson, sendJsonError } from '../src/dir/http-serve';
import { NAME_MIRROR_PATH, NameMirrorStore } from '../src/storage/name-mirror-store';
import { NAME_RECORD_MAX_BYTES } from '../src/wire/name-record';
import { oncePerRegistry, prom } from '../src/ops/metrics';

export const nameMirrorMetric = oncePerRegistry((reg) => new prom.Counter({
  name: 'bitcloud_relay_name_records_total', help: 'Name records this mirror was sent (SPEC.md §9.14.2), by result (stored or the refusal code)',
  labelNames: ['result'], registers: [reg],
}));

/** HTTP status of each refusal (SPEC.md §9.14.2). */
const STATUS: Record<string, number> = {
  NAME_RECORD_MALFORMED: 400, NAME_BAD_SIGNATURE: 400, NAME_RECORD_TOO_LARGE: 413, DHT_SEQ_STALE: 409, NAME_STORE_FULL: 503,
};

export class NameMirror {
  constructor(
    readonly store: NameMirrorStore = new NameMirrorStore(),
    private readonly onResult: (result: string) => void = () => {},
  ) {}

  /** True when `p` is one of the name mirror's paths. */
  static handles(p: string): boolean {
    return p === NAME_MIRROR_PATH || p.startsWith(`${NAME_MIRROR_PATH}/`);
  }

  async serve(req: http.IncomingMessage, res: http.ServerResponse, p: string): Promise<void> {
    if (p === NAME_MIRROR_PATH && req.method === 'POST') {
      const body = await readBody(req, NAME_RECORD_MAX_BYTES);
      if (body === null) {
        this.onResult('NAME_RECORD_TOO_LARGE');
        return sendJsonError(res, 413, 'NAME_RECORD_TOO_LARGE', `a name record is at most ${NAME_RECORD_MAX_BYTES} bytes`);
      }
      try {
        const r = this.store.put(body);
        this.onResult('stored');
        return sendJson(res, 200, { target: r.target, seq: r.seq });
      } catch (e) {
        const code = errorCode(e);
        this.onResult(code);
        return sendJsonError(res, STATUS[code] ?? 400, code, isBitcloudError(e) ? e.message : 'malformed record');
      }
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendJsonError(res, 405, 'HTTP_METHOD', 'POST /bitcloud/name, or GET /bitcloud/name/<40 hex>');
    const target = p.slice(NAME_MIRROR_PATH.length + 1);
    if (!/^[0-9a-f]{40}$/.test(target)) return sendJsonError(res, 404, 'NAME_NOT_FOUND', 'expected /bitcloud/name/<40 lowercase hex>');
    const rec = this.store.get(target);
    if (!rec) return sendJsonError(res, 404, 'NAME_NOT_FOUND', 'this mirror holds no record for that target');
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': rec.length, 'cache-control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : rec);
  }
}
