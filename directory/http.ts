// SPEC.md §6.10: the authority's HTTP interface (node:http).
//   POST /bitcloud/descriptor             upload a relay descriptor (rate limited per address)
//   POST /bitcloud/receipts               upload bandwidth receipts (SPEC.md §8.4; its own rate limit)
//   GET  /bitcloud/consensus              the published consensus (br/gzip; If-Modified-Since)
//   GET  /bitcloud/consensus/signatures   detached signatures on the pending consensus
//   GET  /bitcloud/vote/current[?period=] this authority's vote for the current period
//   GET  /bitcloud/keys/certificate       this authority's key certificate
//   GET  /bitcloud/status                 JSON status
//   GET  /bitcloud/rewards[?from=H]       the reward chain bundle (SPEC.md §8.7.5)
//   GET  /bitcloud/rewards/pending        the reward block being signed, with its signatures
//   POST /bitcloud/transfers              submit a cloudcoin transfer (SPEC.md §8.11.3)
//   GET  /bitcloud/transfers/pending[?from=KEY]  the transfers waiting for a block
//   POST /bitcloud/storage/contracts      upload a storage contract (SPEC.md §9.20.1; rate limited)
//   GET  /bitcloud/storage/audits[?epoch=E[&node=FP]]  this authority's signed audit report (summary)
//                                         of epoch E, or with `node` that node's page of it (SPEC.md §9.20.3)
//   POST /bitcloud/policy/<moderator fp>  upload a moderator policy bundle (SPEC.md §10.7.1; rate limited)
//   GET  /bitcloud/policy/<moderator fp>[?after=SEQ&digest=HEX]  the bundle (304 when nothing newer)
//   GET  /bitcloud/status/history         the status page's history (SPEC.md §6.10)
//   GET  /static/{uplot.min.js,uplot.min.css,status-plots.js}  the page's plotting code (no CDN)
//   POST /bitcloud/hs/desc                upload a hidden node's descriptor (SPEC.md §9.21.3; rate limited)
//   GET  /bitcloud/hs/desc/<blinded key>  a hidden node's descriptor (SPEC.md §9.21.3)
//   POST /bitcloud/hs/pseudonym           a hidden node's pseudonym registration (SPEC.md §9.21.7; rate limited)
//   GET  /                                HTML status page
// Metrics are not served here but on the MetricsPort (SPEC.md §6.10, directory/main.ts).
// Bad input → 4xx with JSON {code, reason}; nothing else changes. Client IPs are never logged.
// A client gone before its body arrived is dropped unanswered (debug, status 499; SPEC.md §6.10).
// SPEC.md §6.10 "Connection and body bounds": at most httpMaxConnectionsPerAddress connections per
// address and httpMaxConnections in all (the configured authorities' addresses excepted, host names
// resolved every 10 minutes, src/ops/connection-caps.ts), and at
// most AUTHORITY_MAX_READING upload bodies being read at once, all upload routes together, at most
// AUTHORITY_MAX_READING_PER_ADDRESS of them of one address key.
import http from 'node:http';
import path from 'node:path';
import { errorCode, isBitcloudError } from '../src/errors';
import type { Logger } from '../src/ops/log';
import { oncePerRegistry, prom, type Registry } from '../src/ops/metrics';
import { LIMITS } from '../src/wire/docs';
import { FETCHER_HEADER, PATHS } from '../src/dir/fetch';
import { isServerFault, readBody, requestTarget, sendBadTarget, sendJson, sendJsonError, sendJsonText, serveDocument, ServedDocument } from '../src/dir/http-serve';
import type { Authority } from './authority';
import type { AuthorityMetrics } from './metrics';
import { RateLimiter, uploaderKey } from './rate-limit';
import { PolicyStore } from '../src/moderation/store';
import { BUNDLE_LIMITS } from '../src/moderation/chain';
import { POLICY_PATH } from '../src/moderation/sources';
import { sendHtml, serveStaticFile } from '../src/ops/static-files';
import { StatusPageCache, STATIC_FILES } from './status-page';
import type { RewardLedger } from './rewards';
import { RewardBundles, serveEscrowCancel, serveRewards, serveTransfers } from './reward-http';
import { createReceiptIntakeMetrics, RECEIPTS_PATH, serveReceiptUpload, UploadGate } from './receipts';
import type { StorageAudits } from './storage-audits';
import { AuditPagePlaces, serveStorageAudits } from './storage-http';
import { dropUnreadBody, HTTP_IDLE_TIMEOUT_MS, HTTP_SERVER_TIMEOUTS } from '../src/ops/http-body';
import { HS_DESC_PATH } from '../src/hidden/store';
import { HS_PSEUDONYM_PATH } from '../src/hidden/pseudonym';
import { PSEUDONYM_UPLOAD_MAX } from '../src/wire/pseudonym';
import { PSEUDONYM_REFUSAL_STATUS } from './pseudonyms';
import { HS_DESC_MAX } from '../src/wire/hidden';
import { signUploadAck, signUploadNack, type UploadKind } from '../src/dir/upload-ack';
import { capConnections, ConnectionCaps } from '../src/ops/connection-caps';
import { KeyCounts } from '../src/ops/key-counts';

/**
 * SPEC.md §6.10 "Connection and body bounds": upload bodies (POST requests with a body, every upload
 * route together) read at once; a further one is answered 503 RATE_LIMITED with Retry-After: 1 at
 * once, its body unread. The per-address rate limits do not bound them (over circuits every client
 * of a relay's mirror shares its address), nor does the 30 s request deadline alone.
 */
export const AUTHORITY_MAX_READING = 64;
/**
 * SPEC.md §6.10 "Connection and body bounds": of those, at most this many from one address key
 * (§7b.9), except on a test network, whose nodes all share an address. Else one host opening 64
 * connections and sending each body a byte at a time (on a route with no rate limit, such as
 * POST /bitcloud/transfers) would hold every place and keep every relay's descriptor upload out.
 * A relay mirror passes on at most 16 uploads at once (§9.21.8), so its share is enough for it.
 */
export const AUTHORITY_MAX_READING_PER_ADDRESS = 16;

/**
 * SPEC.md §6.10: a place for each upload body being read, taken when its request arrives and given
 * back once the body has arrived in full, the answer is sent, or the connection is gone, whichever
 * comes first (as a relay mirror bounds the uploads it reads, relay/upload-forward.ts).
 */
export class BodyReadingGate {
  private reading = 0;
  /** Places held by address key (only with a per-address share). */
  private readonly byAddress = new KeyCounts();
  /** `maxPerAddress` 0: no per-address share (a test network). */
  constructor(readonly max = AUTHORITY_MAX_READING, readonly maxPerAddress = AUTHORITY_MAX_READING_PER_ADDRESS) {}

  /** Take a place for `req`'s body; false when `max` are taken, or `maxPerAddress` by its address key. */
  tryTake(req: http.IncomingMessage, res: http.ServerResponse): boolean {
    if (this.reading >= this.max) return false;
    const key = this.maxPerAddress > 0 ? uploaderKey(req.socket.remoteAddress) : null;
    if (key !== null && this.byAddress.get(key) >= this.maxPerAddress) return false;
    this.reading++;
    if (key !== null) this.byAddress.add(key);
    let held = true;
    const give = () => {
      if (!held) return;
      held = false;
      this.reading--;
      if (key !== null) this.byAddress.remove(key);
      req.off('end', give); req.off('close', give); res.off('finish', give); res.off('close', give);
    };
    req.once('end', give); req.once('close', give); res.once('finish', give); res.once('close', give);
    return true;
  }
}

/** A request that carries a body an upload route would read (every upload route is a POST). */
function uploadsBody(req: http.IncomingMessage): boolean {
  if (req.method !== 'POST') return false;
  const len = Number(req.headers['content-length'] ?? 0);
  return req.headers['transfer-encoding'] !== undefined || (Number.isFinite(len) && len > 0);
}

export function createAuthorityServer(a: Authority, reg: Registry, m: AuthorityMetrics, log: Logger, rewards?: RewardLedger, storage?: StorageAudits): http.Server {
  const limiter = new RateLimiter(a.config.rateLimit.uploadsPerMinute, a.config.rateLimit.burst);
  // SPEC.md §6.10 "Rate limits", §9.21.8: uploads a mirror passes on (fetcher header "mirror") are
  // charged to buckets of their own, so repeats passed on by a relay's mirror cannot starve the
  // same address's own (direct) descriptor uploads; a sender claiming the header only moves its
  // uploads to its own address's mirror bucket.
  const mirrorLimiter = new RateLimiter(a.config.rateLimit.uploadsPerMinute, a.config.rateLimit.burst);
  const certDoc = new ServedDocument(a.signer.certificate, Date.now());
  // Policies have their own budget: descriptor traffic from a shared address cannot starve them.
  const policyLimiter = new RateLimiter(a.config.rateLimit.uploadsPerMinute, a.config.rateLimit.burst);
  // Receipts too (SPEC.md §8.4): every node uploads every epoch, from shared addresses on a local network.
  const receiptLimiter = new RateLimiter(a.config.receiptRateLimit.uploadsPerMinute, a.config.receiptRateLimit.burst);
  const receiptMetrics = createReceiptIntakeMetrics(reg);
  // Storage contracts (SPEC.md §9.20.1) have their own budget too.
  const contractLimiter = new RateLimiter(a.config.rateLimit.uploadsPerMinute, a.config.rateLimit.burst);
  const receiptGate = new UploadGate();
  // SPEC.md §9.20.3: audit report page places; the configured authorities' addresses have no per-address share.
  const auditPages = new AuditPagePlaces(a.config.authorities);
  const rewardBundles = rewards ? new RewardBundles(rewards, a.config.authorities) : undefined;
  // Hidden descriptors (SPEC.md §9.21.3): every hidden node uploads two per round, maybe from a shared address.
  const hsLimiter = new RateLimiter(a.config.receiptRateLimit.uploadsPerMinute, a.config.receiptRateLimit.burst);
  const hsMirrorLimiter = new RateLimiter(a.config.receiptRateLimit.uploadsPerMinute, a.config.receiptRateLimit.burst);
  // SPEC.md §9.21.8: accepted uploads by kind and by how they came (a mirror passing on a hidden
  // node's upload says so in its fetcher header; anything else counts as direct).
  const uploadSources = uploadSourceMetric(reg);
  const pseudonymResults = pseudonymMetric(reg);
  const statusPage = new StatusPageCache();
  const viaOf = (req: http.IncomingMessage) => (fetcherOf(req) === 'mirror' ? 'mirror' : 'direct');
  const descriptorLimiterOf = (req: http.IncomingMessage) => (viaOf(req) === 'mirror' ? mirrorLimiter : limiter);
  const hsLimiterOf = (req: http.IncomingMessage) => (viaOf(req) === 'mirror' ? hsMirrorLimiter : hsLimiter);
  const policies = new PolicyStore(path.join(a.config.dataDir, 'policies'), { skewMs: a.config.clockSkewSeconds * 1000 });
  // SPEC.md §6.10: no per-address share on a test network (every node uploads from one address).
  const bodies = new BodyReadingGate(AUTHORITY_MAX_READING, a.config.testNetwork ? 0 : AUTHORITY_MAX_READING_PER_ADDRESS);
  const bodiesRefused = bodiesRefusedMetric(reg);

  const route = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<[string, number]> => {
    // SPEC.md §6.10: Node's parser passes targets the URL parser refuses (`GET http://[ HTTP/1.1`);
    // such a request is the client's fault, answered 400 and logged at debug only.
    const url = requestTarget(req);
    if (!url) {
      log.debug({ target: (req.url ?? '').slice(0, 100) }, 'request target is not a valid URL');
      sendBadTarget(res);
      return ['bad_request', 400];
    }
    const p = url.pathname;
    const get = req.method === 'GET' || req.method === 'HEAD';
    // SPEC.md §6.10 "Connection and body bounds": at most AUTHORITY_MAX_READING upload bodies read
    // at once, all routes together; a further one is refused at once, unread.
    if (uploadsBody(req) && !bodies.tryTake(req, res)) {
      bodiesRefused.inc();
      res.setHeader('retry-after', '1');
      sendJsonError(res, 503, 'RATE_LIMITED', 'this authority is reading as many uploads as it may; retry shortly');
      return ['upload_busy', 503];
    }

    if (p === PATHS.descriptor) {
      if (req.method !== 'POST') { sendJsonError(res, 405, 'HTTP_METHOD', 'use POST'); return ['descriptor', 405]; }
      // SPEC.md §6.10 "Rate limits": per IPv4 address / IPv6 /64, as receipts are (§8.4); a
      // mirror's pass-through has its own bucket (§9.21.8).
      if (!descriptorLimiterOf(req).takeRemote(req.socket.remoteAddress, Date.now())) {
        req.resume();
        m.uploads.labels('RATE_LIMITED').inc();
        sendJsonError(res, 429, 'RATE_LIMITED', 'too many uploads from this address; slow down');
        return ['descriptor', 429];
      }
      const body = await readBody(req, LIMITS.descriptorBytes);
      if (body === null) {
        m.uploads.labels('DOC_TOO_LARGE').inc();
        sendJsonError(res, 413, 'DOC_TOO_LARGE', `a descriptor is at most ${LIMITS.descriptorBytes} bytes`);
        return ['descriptor', 413];
      }
      try {
        const { result, descriptor } = await a.acceptDescriptorWithProof(body, req.socket.remoteAddress);
        m.uploads.labels(result).inc();
        log.debug({ relay: descriptor.fingerprint, result }, 'descriptor received');
        uploadSources.inc({ kind: descriptor.roles.includes('hidden') ? 'hidden_descriptor' : 'descriptor', via: viaOf(req) });
        sendJson(res, 200, { accepted: true, result, fingerprint: descriptor.fingerprint, ack: uploadAck(a, 'descriptor', body) });
        return ['descriptor', 200];
      } catch (e) {
        const code = errorCode(e);
        m.uploads.labels(code).inc();
        // SPEC.md §6.4.1, §9.21.8: IDENTITY_POW_BUSY judges no body (the queue of identity proofs
        // waiting to be checked is full): 503 with Retry-After and no nack, so that neither the
        // relay nor a mirror passing the upload on takes it as a final refusal.
        const status = code === 'IDENTITY_POW_BUSY' ? 503 : isBitcloudError(e) ? 400 : 500;
        if (status === 503) res.setHeader('retry-after', '1');
        sendUploadError(a, res, 'descriptor', body, status, code, isBitcloudError(e) ? e.message : 'internal error');
        return ['descriptor', status];
      }
    }
    const tr = (await serveTransfers(rewards, req, res, url)) ?? (await serveEscrowCancel(rewards, req, res, url));
    if (tr) return tr;
    if (p === HS_PSEUDONYM_PATH) return servePseudonym(a, req, res, hsLimiterOf(req), pseudonymResults, () => uploadSources.inc({ kind: 'hs_pseudonym', via: viaOf(req) }));
    if (p === HS_DESC_PATH || p.startsWith(`${HS_DESC_PATH}/`)) return serveHsDescriptor(a, req, res, p, hsLimiterOf(req), () => uploadSources.inc({ kind: 'hs_desc', via: viaOf(req) }));
    const st = await serveStorageAudits(storage, req, res, url, contractLimiter, auditPages);
    if (st) return st;
    if (p === RECEIPTS_PATH) return ['receipts', await serveReceiptUpload(a.measurement, req, res, receiptLimiter, receiptMetrics, receiptGate)];
    if (p.startsWith(POLICY_PATH)) {
      // Moderator policies (SPEC.md §10.7.1): kept only when they verify and are newer.
      const fp = p.slice(POLICY_PATH.length);
      if (!/^[0-9a-f]{64}$/.test(fp)) { sendJsonError(res, 404, 'POLICY_BAD_MODERATOR', 'expected /bitcloud/policy/<64 lowercase hex>'); return ['policy', 404]; }
      if (req.method === 'POST') {
        if (!policyLimiter.takeRemote(req.socket.remoteAddress, Date.now())) { req.resume(); sendJsonError(res, 429, 'RATE_LIMITED', 'too many uploads from this address; slow down'); return ['policy', 429]; }
        const body = await readBody(req, BUNDLE_LIMITS.bytes);
        if (body === null) { sendJsonError(res, 413, 'POLICY_MALFORMED', `a policy bundle is at most ${BUNDLE_LIMITS.bytes} bytes`); return ['policy', 413]; }
        try {
          const r = policies.accept(fp, body);
          log.info({ moderator: fp, seq: r.seq, result: r.result }, 'policy received');
          sendJson(res, 200, { accepted: true, ...r });
          return ['policy', 200];
        } catch (e) {
          // SPEC.md §6.10 "Error answers": a failure to keep the policy (its file) is this
          // authority's, answered 500 INTERNAL; its message, which names the folder, is logged only.
          if (isServerFault(e)) {
            log.warn({ moderator: fp, code: errorCode(e), err: (e as Error)?.message }, 'keeping a moderator policy failed');
            sendJsonError(res, 500, 'INTERNAL', 'internal error');
            return ['policy', 500];
          }
          sendJsonError(res, 400, errorCode(e), (e as Error).message);
          return ['policy', 400];
        }
      }
      if (!get) { sendJsonError(res, 405, 'HTTP_METHOD', 'use GET or POST'); return ['policy', 405]; }
      const after = url.searchParams.get('after');
      const digest = url.searchParams.get('digest');
      const ans = policies.serve(fp, after !== null && /^\d{1,15}$/.test(after) ? Number(after) : undefined,
        digest !== null && /^[0-9a-f]{64}$/.test(digest) ? Buffer.from(digest, 'hex') : undefined);
      if (ans.status === 404) { sendJsonError(res, 404, 'POLICY_NOT_FOUND', 'no policy of that moderator is known here'); return ['policy', 404]; }
      if (ans.status === 304) { res.writeHead(304); res.end(); return ['policy', 304]; }
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': ans.bundle.length, 'cache-control': 'no-store', 'x-bitcloud-policy-seq': String(ans.seq) });
      res.end(req.method === 'HEAD' ? undefined : ans.bundle);
      return ['policy', 200];
    }
    if (!get) { sendJsonError(res, 405, 'HTTP_METHOD', 'use GET'); return ['other', 405]; }
    if (p === PATHS.rewards) m.rewardFetches.inc({ fetcher: fetcherOf(req) });
    const rw = await serveRewards(rewardBundles, req, res, url);
    if (rw) return rw;
    switch (p) {
      case PATHS.consensus: {
        // SPEC.md §6.10.1: direct fetches by kind of fetcher as it declares itself (clients that
        // have a guard fetch through it, so "client" should only count bootstraps).
        m.consensusFetches.inc({ fetcher: fetcherOf(req) });
        return ['consensus', serveDocument(req, res, a.published?.served ?? null, 'CONSENSUS_NOT_AVAILABLE', 'no consensus has been published yet')];
      }
      case PATHS.signatures: {
        const sigs = a.detachedSignatures();
        if (!sigs) { sendJsonError(res, 404, 'SIGNATURES_NOT_AVAILABLE', 'no consensus computed for this period yet'); return ['signatures', 404]; }
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': sigs.length, 'cache-control': 'no-store' });
        res.end(sigs);
        return ['signatures', 200];
      }
      case PATHS.vote: {
        const want = url.searchParams.get('period');
        const doc = want !== null && String(a.currentVotePeriod) !== want ? null : a.currentVote;
        return ['vote', serveDocument(req, res, doc, 'VOTE_NOT_AVAILABLE', 'no vote for that period')];
      }
      case PATHS.certificate:
        return ['certificate', serveDocument(req, res, certDoc, 'CERT_NOT_AVAILABLE', '')];
      case PATHS.status:
        // SPEC.md §6.10: built at most once a second (and at once for a new consensus), as the page is.
        sendJsonText(res, 200, statusPage.json(a));
        return ['status', 200];
      case '/bitcloud/status/history':
        // SPEC.md §6.10: serialised once per change of the history, not once per request.
        sendJsonText(res, 200, a.history.json());
        return ['status_history', 200];
      case '/static/uplot.min.js':
      case '/static/uplot.min.css':
      case '/static/status-plots.js': {
        if (!serveStaticFile(STATIC_FILES(), p, req, res)) { sendJsonError(res, 404, 'NOT_FOUND', 'asset missing from this installation'); return ['static', 404]; }
        return ['static', 200];
      }
      case '/': {
        // SPEC.md §6.10: with the status pages' Content-Security-Policy and nosniff.
        sendHtml(res, statusPage.page(a), req.method === 'HEAD');
        return ['status_page', 200];
      }
      default:
        sendJsonError(res, 404, 'NOT_FOUND', `no such path: ${p.slice(0, 100)}`);
        return ['other', 404];
    }
  };

  // SPEC.md §6.10: the shared header and request deadlines; receipt uploads have their own,
  // shorter body deadline (SPEC.md §8.4, directory/receipts.ts). A connection idle either way for
  // HTTP_IDLE_TIMEOUT_MS is destroyed (the server has no 'timeout' listener): a reader that stops
  // reading an answer does not keep it queued.
  const srv = http.createServer({ ...HTTP_SERVER_TIMEOUTS }, (req, res) => {
    dropUnreadBody(req, res);
    route(req, res).then(([r, status]) => m.http.labels(r, String(status)).inc(), (e) => {
      // SPEC.md §6.10: a client that went away before its request body arrived in full (reading it
      // failed because Node destroyed the request) is no failure of this server: nobody is left to
      // answer; debug only, counted as status 499 of route "aborted".
      if (req.destroyed && !req.complete) {
        m.http.labels('aborted', '499').inc();
        log.debug({ err: (e as Error).message }, 'client went away before its request body arrived');
        return;
      }
      m.errors.labels(errorCode(e)).inc();
      log.error({ err: (e as Error).message }, 'HTTP handler failed');
      if (!res.headersSent) sendJsonError(res, 500, 'INTERNAL', 'internal error');
      else res.destroy();
    });
  });
  srv.setTimeout(HTTP_IDLE_TIMEOUT_MS);
  // SPEC.md §6.10 "Connection and body bounds": a connection over the per-address or the total cap is
  // destroyed as it arrives (not Node's maxConnections, which looks at no address).
  const caps = new ConnectionCaps({
    max: a.config.httpMaxConnections, maxPerAddress: a.config.httpMaxConnectionsPerAddress,
    exemptHosts: a.config.authorities.map((x) => x.host), log,
  });
  const connectionsRefused = connectionsRefusedMetric(reg);
  capConnections(srv, caps, (reason) => connectionsRefused.labels(reason).inc());
  return srv;
}

const connectionsRefusedMetric = oncePerRegistry((reg) => new prom.Counter({
  name: 'bitcloud_dirauth_http_connections_refused_total', help: 'Connections to the HTTP port destroyed as they arrived, by reason (per_address: httpMaxConnectionsPerAddress; total: httpMaxConnections; SPEC.md §6.10)',
  labelNames: ['reason'], registers: [reg],
}));

const bodiesRefusedMetric = oncePerRegistry((reg) => new prom.Counter({
  name: 'bitcloud_dirauth_upload_bodies_refused_total', help: 'Uploads answered 503 RATE_LIMITED unread because 64 upload bodies were being read already, or 16 from the uploader\'s address (SPEC.md §6.10)',
  registers: [reg],
}));

const uploadSourceMetric = oncePerRegistry((reg) => new prom.Counter({
  name: 'bitcloud_dirauth_upload_sources_total', help: 'Accepted descriptor uploads by kind (descriptor, hidden_descriptor, hs_desc, hs_pseudonym) and source (mirror, direct)',
  labelNames: ['kind', 'via'], registers: [reg],
}));

/** The fetcher a request declares (SPEC.md §6.10.1), as a metric label; informative only. */
function fetcherOf(req: http.IncomingMessage): string {
  const f = String(req.headers[FETCHER_HEADER] ?? '');
  return f === 'client' || f === 'mirror' || f === 'node' ? f : 'other';
}

const pseudonymMetric = oncePerRegistry((reg) => new prom.Counter({
  name: 'bitcloud_dirauth_pseudonym_registrations_total', help: 'Hidden nodes\' pseudonym registrations (SPEC.md §9.21.7) by result (new, unchanged, or the refusal code)',
  labelNames: ['result'], registers: [reg],
}));

/**
 * SPEC.md §9.21.8 "Upload acknowledgements": every 200 to a relay descriptor, hidden descriptor or
 * pseudonym registration upload (direct or passed on by a mirror, "unchanged" too) carries this
 * authority's signature by its current signing key over the body as received, so that a hidden
 * node can tell the authority took its own upload whatever the mirror says.
 */
function uploadAck(a: Authority, kind: UploadKind, body: Buffer): string {
  return signUploadAck(kind, body, a.signer.signingKey.secretKey);
}

/**
 * SPEC.md §9.21.8 "Upload acknowledgements": an error answer to a relay descriptor, hidden
 * descriptor or pseudonym registration upload whose body was read. A 4xx but 429 (a refusal of
 * this very body) carries `nack`, this authority's signature by its current signing key over the
 * kind, the code and the body as received, so that a mirror cannot make a hidden node believe an
 * authority refused an upload it never passed on; 429 (retry) and 5xx carry none.
 */
function sendUploadError(a: Authority, res: http.ServerResponse, kind: UploadKind, body: Buffer, status: number, code: string, reason: string): void {
  if (status < 400 || status >= 500 || status === 429) { sendJsonError(res, status, code, reason); return; }
  sendJson(res, status, { code, reason, nack: signUploadNack(kind, body, code, a.signer.signingKey.secretKey) });
}

/** SPEC.md §9.21.7: a hidden node's pseudonym registration, sealed to this authority, usually passed on by a mirror. */
async function servePseudonym(a: Authority, req: http.IncomingMessage, res: http.ServerResponse, limiter: RateLimiter, results: prom.Counter<'result'>, onAccepted: () => void): Promise<[string, number]> {
  if (req.method !== 'POST') { req.resume(); sendJsonError(res, 405, 'HTTP_METHOD', 'use POST'); return ['hs_pseudonym', 405]; }
  if (!limiter.takeRemote(req.socket.remoteAddress, Date.now())) { req.resume(); sendJsonError(res, 429, 'RATE_LIMITED', 'too many uploads from this address; slow down'); return ['hs_pseudonym', 429]; }
  const body = await readBody(req, PSEUDONYM_UPLOAD_MAX);
  if (body === null) { results.inc({ result: 'HIDDEN_PSEUDONYM_MALFORMED' }); sendJsonError(res, 413, 'HIDDEN_PSEUDONYM_MALFORMED', `a registration upload is at most ${PSEUDONYM_UPLOAD_MAX} bytes`); return ['hs_pseudonym', 413]; }
  try {
    const r = await a.pseudonyms.accept(body);
    results.inc({ result: r.result });
    onAccepted();
    sendJson(res, 200, { accepted: true, ...r, ack: uploadAck(a, 'hs_pseudonym', body) });
    return ['hs_pseudonym', 200];
  } catch (e) {
    const code = errorCode(e);
    const status = PSEUDONYM_REFUSAL_STATUS[code] ?? 500;
    results.inc({ result: code });
    sendUploadError(a, res, 'hs_pseudonym', body, status, code, isBitcloudError(e) ? e.message : 'internal error');
    return ['hs_pseudonym', status];
  }
}

/**
 * SPEC.md §9.21.3: hidden descriptors, uploaded by hidden nodes and fetched (through mirrors) by
 * clients. An upload is answered 200 "new", "updated" or "unchanged" (the held descriptor again,
 * byte for byte: a node's resend through another mirror), each with its ack (§9.21.8); a lower
 * revision, or the held one with other bytes, 409 HIDDEN_DESC_STALE with a nack.
 */
async function serveHsDescriptor(a: Authority, req: http.IncomingMessage, res: http.ServerResponse, p: string, limiter: RateLimiter, onAccepted: () => void): Promise<[string, number]> {
  if (p === HS_DESC_PATH) {
    if (req.method !== 'POST') { sendJsonError(res, 405, 'HTTP_METHOD', 'use POST'); return ['hs', 405]; }
    if (!limiter.takeRemote(req.socket.remoteAddress, Date.now())) { req.resume(); sendJsonError(res, 429, 'RATE_LIMITED', 'too many uploads from this address; slow down'); return ['hs', 429]; }
    const body = await readBody(req, HS_DESC_MAX);
    if (body === null) { sendJsonError(res, 413, 'HIDDEN_DESC_MALFORMED', `a hidden descriptor is at most ${HS_DESC_MAX} bytes`); return ['hs', 413]; }
    try {
      const r = a.hsDescriptors.accept(body);
      onAccepted();
      sendJson(res, 200, { accepted: true, ...r, ack: uploadAck(a, 'hs_desc', body) });
      return ['hs', 200];
    } catch (e) {
      const code = errorCode(e);
      const status = code === 'HIDDEN_DESC_STALE' ? 409 : isBitcloudError(e) ? 400 : 500;
      sendUploadError(a, res, 'hs_desc', body, status, code, isBitcloudError(e) ? e.message : 'internal error');
      return ['hs', status];
    }
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') { sendJsonError(res, 405, 'HTTP_METHOD', 'use GET'); return ['hs', 405]; }
  const key = p.slice(HS_DESC_PATH.length + 1);
  if (!/^[0-9a-f]{64}$/.test(key)) { sendJsonError(res, 404, 'HIDDEN_DESC_NOT_FOUND', 'expected /bitcloud/hs/desc/<64 lowercase hex>'); return ['hs', 404]; }
  const d = a.hsDescriptors.get(key);
  if (!d) { sendJsonError(res, 404, 'HIDDEN_DESC_NOT_FOUND', 'no descriptor for that blinded key'); return ['hs', 404]; }
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': d.length, 'cache-control': 'no-store' });
  res.end(req.method === 'HEAD' ? undefined : d);
  return ['hs', 200];
}
