// SPEC.md §6.10: directory HTTP transfers. A small node:http client with a hard size limit,
// a timeout, and gzip/br decoding bounded by the same limit (a compressed bomb cannot grow
// past it). Used by authorities (votes, signatures), relays (upload, mirror) and clients.
import http from 'node:http';
import type { Duplex } from 'node:stream';
import zlib from 'node:zlib';
import { err } from '../errors';

export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface HttpRequestOptions {
  method?: 'GET' | 'POST';
  body?: Uint8Array;
  headers?: Record<string, string>;
  timeoutMs?: number;
  /** Refuse bodies (after decompression) larger than this. */
  maxBytes: number;
  /** Speak HTTP over this stream instead of a TCP connection (a BEGIN_DIR stream, SPEC.md §6.10.1). */
  createConnection?: () => Duplex;
  /** Give up (DIR_FETCH_FAILED, the connection closed) once this is aborted. */
  signal?: AbortSignal;
}

/**
 * One HTTP request. Rejects with DIR_FETCH_FAILED (network, timeout) or DIR_RESPONSE_TOO_LARGE;
 * any HTTP status resolves (callers decide what a status means).
 */
export function httpRequest(url: string, o: HttpRequestOptions): Promise<HttpResponse> {
  const timeoutMs = o.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    let done = false;
    let response: http.IncomingMessage | null = null;
    let decoder: zlib.Gunzip | zlib.BrotliDecompress | null = null;
    const fail = (e: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      // SPEC.md §6.10: past the limit nothing more is read or inflated; the decoder would
      // otherwise go on inflating the input it already holds (a bomb of a few hundred bytes
      // grows to gigabytes).
      if (response && decoder) response.unpipe(decoder);
      decoder?.destroy();
      response?.destroy();
      req.destroy();
      reject(e);
    };
    const req = http.request(url, {
      method: o.method ?? 'GET',
      ...(o.createConnection ? { createConnection: o.createConnection as unknown as http.RequestOptions['createConnection'] } : {}),
      headers: { 'accept-encoding': 'gzip, br', ...(o.body ? { 'content-type': 'application/octet-stream', 'content-length': String(o.body.length) } : {}), ...o.headers },
    }, (res) => {
      const enc = String(res.headers['content-encoding'] ?? 'identity').toLowerCase();
      response = res;
      if (enc === 'gzip') decoder = zlib.createGunzip({ maxOutputLength: o.maxBytes + 1 });
      else if (enc === 'br') decoder = zlib.createBrotliDecompress({ maxOutputLength: o.maxBytes + 1 });
      else if (enc !== 'identity') return fail(err('DIR_FETCH_FAILED', `unsupported content-encoding ${enc}`));
      const stream: NodeJS.ReadableStream = decoder ? res.pipe(decoder) : res;
      const chunks: Buffer[] = [];
      let size = 0;
      stream.on('data', (c: Buffer) => {
        size += c.length;
        if (size > o.maxBytes) fail(err('DIR_RESPONSE_TOO_LARGE', `response from ${url} exceeds ${o.maxBytes} bytes`));
        else chunks.push(c);
      });
      stream.on('error', (e: NodeJS.ErrnoException) => {
        if (e.code === 'ERR_BUFFER_TOO_LARGE') fail(err('DIR_RESPONSE_TOO_LARGE', `response from ${url} exceeds ${o.maxBytes} bytes`));
        else fail(err('DIR_FETCH_FAILED', `${url}: ${e.message}`, { errno: e.code }, e));
      });
      stream.on('end', () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
      });
    });
    const timer = setTimeout(() => fail(err('DIR_FETCH_FAILED', `${url}: no answer in ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (e: NodeJS.ErrnoException) => { fail(err('DIR_FETCH_FAILED', `${url}: ${e.code ?? e.message}`, { errno: e.code }, e)); });
    req.on('close', () => clearTimeout(timer));
    if (o.signal) {
      const onAbort = () => fail(err('DIR_FETCH_FAILED', `${url}: aborted`));
      if (o.signal.aborted) onAbort();
      else {
        o.signal.addEventListener('abort', onAbort, { once: true });
        req.on('close', () => o.signal?.removeEventListener('abort', onAbort));
      }
    }
    req.end(o.body ? Buffer.from(o.body) : undefined);
  });
}

/** The reason in a {code, reason} error body, if the server sent one. */
export function errorBodyReason(r: HttpResponse): string {
  try {
    const j = JSON.parse(r.body.toString('utf8')) as { code?: string; reason?: string };
    if (j.code) return `${j.code}: ${j.reason ?? ''}`;
  } catch { /* not JSON */ }
  return `HTTP ${r.status}`;
}

export const PATHS = {
  descriptor: '/bitcloud/descriptor',
  consensus: '/bitcloud/consensus',
  signatures: '/bitcloud/consensus/signatures',
  vote: '/bitcloud/vote/current',
  certificate: '/bitcloud/keys/certificate',
  status: '/bitcloud/status',
  /** SPEC.md §8.7.5: the reward chain bundle (`?from=H`) and the block being signed. */
  rewards: '/bitcloud/rewards',
  rewardsPending: '/bitcloud/rewards/pending',
  /** SPEC.md §8.11.3: submit a transfer (POST); the pending ones (GET …/pending). */
  transfers: '/bitcloud/transfers',
  transfersPending: '/bitcloud/transfers/pending',
  escrowCancel: '/bitcloud/escrow/cancel',
} as const;

/**
 * SPEC.md §6.10.1: who fetches, as the fetcher says (informative, for the authority's
 * `bitcloud_dirauth_consensus_fetches_total`; nothing trusts it).
 */
export type Fetcher = 'client' | 'mirror' | 'node';
export const FETCHER_HEADER = 'x-bitcloud-fetcher';

/**
 * GET the consensus from a base URL (authority or relay mirror). `ifModifiedSince` (ms) sends
 * If-Modified-Since; a 304 resolves to null. Other non-200 statuses reject DIR_FETCH_FAILED.
 */
export async function fetchConsensusBytes(baseUrl: string, o: { ifModifiedSince?: number; timeoutMs?: number; maxBytes: number; fetcher?: Fetcher; createConnection?: () => Duplex }): Promise<Buffer | null> {
  const headers: Record<string, string> = {};
  if (o.ifModifiedSince) headers['if-modified-since'] = new Date(o.ifModifiedSince).toUTCString();
  if (o.fetcher) headers[FETCHER_HEADER] = o.fetcher;
  const r = await httpRequest(baseUrl + PATHS.consensus, { headers, timeoutMs: o.timeoutMs, maxBytes: o.maxBytes, createConnection: o.createConnection });
  if (r.status === 304) return null;
  if (r.status !== 200) throw err('DIR_FETCH_FAILED', `${baseUrl}: ${errorBodyReason(r)}`, { status: r.status });
  return r.body;
}
