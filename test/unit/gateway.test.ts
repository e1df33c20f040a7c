// SPEC.md §9.15–§9.16: folders and the `.bitcloud` gateway, against real in-process storage nodes
// (direct sessions) and a real SOCKS5 server on 127.0.0.1 driven by curl. The daemons-and-circuits
// version is test/integration/gateway.test.ts.
import fsp from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadOrCreateNodeKeys, fingerprint } from '../../src/crypto/keys';
import { randomBytes } from '../../src/crypto/primitives';
import { err } from '../../src/errors';
import type { ConsensusRelay } from '../../src/dir/types';
import { connectStorageDirect } from '../../src/storage/direct';
import { base32Encode, formatCapability, parseCapability, type Capability } from '../../src/storage/capability';
import { decodeFolder, encodeFolder, folderPathProblem, FOLDER_CONTENT_TYPE, lookupFolder, MAX_FOLDER_BYTES, MAX_FOLDER_ENTRIES } from '../../src/storage/folder';
import { StorageClient, storageNodesOf } from '../../src/client/storage-client';
import { putFile } from '../../src/client/storage-client-put';
import { fetchManifest, fetchRoot } from '../../src/client/storage-client-get';
import { getFolder, putFolder } from '../../src/client/storage-client-folder';
import { capabilityHost, capabilityUrl, isBitcloudHost, parseCapabilityHost } from '../../src/client/gateway/host';
import { parseRange } from '../../src/client/gateway/http-range';
import { contentTypeFor } from '../../src/client/gateway/content-type';
import { Gateway, parseRequestPath } from '../../src/client/gateway/gateway';
import { BlobReader, folderMemoryBytes, manifestMemoryBytes } from '../../src/client/gateway/reader';
import { startSocks5Server, type Socks5Server } from '../../src/client/socks5';
import { createRegistry } from '../../src/ops/metrics';
import { ShareStore } from '../../storage/share-store';
import { StorageEndpoint } from '../../storage/endpoint';
import { curl, metric, parsePrometheus } from '../helpers/localnet';

const KiB = 1024;
let root: string;
const stores: Array<{ store: ShareStore; endpoint: StorageEndpoint; relay: ConsensusRelay }> = [];
let gateway: Gateway;
let socks: Socks5Server;
const registry = createRegistry('client');
let site: string;
let siteCap: Capability;
let video: Buffer;
let videoCap: Capability;

function client(): StorageClient {
  return new StorageClient({
    nodes: storageNodesOf(stores.map((n) => n.relay)),
    open: (node) => connectStorageDirect({ host: node.address, port: node.storagePort, expectedIdentity: node.identity, timeoutMs: 2000 }),
    requestTimeoutMs: 10_000,
  });
}

async function put(file: string, o: Parameters<typeof putFile>[2] = {}): Promise<Capability> {
  const c = client();
  try { return parseCapability((await putFile(c, file, o)).capability); } finally { await c.close(); }
}

interface Reply { status: number; headers: Record<string, string>; body: Buffer }

/** One request through the SOCKS proxy with curl (names resolved by the proxy), headers kept. */
async function get(host: string, p: string, extra: string[] = []): Promise<Reply> {
  const r = await curl(['-s', '-i', '--path-as-is', '--socks5-hostname', `127.0.0.1:${socks.address.port}`, ...extra, `http://${host}${p}`], { timeoutMs: 60_000 });
  expect(r.code, r.stderr).toBe(0);
  const sep = r.stdout.indexOf('\r\n\r\n');
  const head = r.stdout.subarray(0, sep).toString('latin1').split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of head.slice(1)) { const i = line.indexOf(':'); headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim(); }
  return { status: Number(head[0].split(' ')[1]), headers, body: r.stdout.subarray(sep + 4) };
}

beforeAll(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-gateway-'));
  for (let i = 0; i < 6; i++) {
    const dir = path.join(root, `node${i}`);
    const keys = await loadOrCreateNodeKeys(dir);
    const store = await ShareStore.open({ dir, quotaBytes: 256 * 1024 * KiB });
    const endpoint = new StorageEndpoint({ keys: () => keys, store, host: '127.0.0.1', orPort: 0, storagePort: 0 });
    await endpoint.start();
    stores.push({
      store, endpoint, relay: {
        identity: keys.identity.publicKey, fingerprint: fingerprint(keys.identity.publicKey), nickname: `s${i}`, onionKey: keys.onion.publicKey,
        address: '127.0.0.1', orPort: endpoint.orPort, dirPort: 0, storagePort: endpoint.storagePort,
        flags: new Set(['Running', 'Valid', 'Storage']) as ConsensusRelay['flags'], weight: 1, proven: 0, exitPolicy: [], family: [], roles: ['storage'],
        moderators: [], unmoderated: true, version: 'test',
      },
    });
  }
  // A small site: a page with a stylesheet and an image, a sub-folder, and a "video" of 13 chunks.
  site = path.join(root, 'site');
  await fsp.mkdir(path.join(site, 'docs', 'deep'), { recursive: true });
  await fsp.writeFile(path.join(site, 'index.html'), '<!doctype html><link rel="stylesheet" href="style.css"><img src="img/dot.png"><h1>hello</h1>');
  await fsp.writeFile(path.join(site, 'style.css'), 'h1 { color: rgb(1, 2, 3); }');
  await fsp.mkdir(path.join(site, 'img'));
  await fsp.writeFile(path.join(site, 'img', 'dot.png'), randomBytes(300));
  await fsp.writeFile(path.join(site, 'docs', 'deep', 'a b.txt'), 'spaced name');
  video = randomBytes(3 * 1024 * KiB + 12_345);
  await fsp.writeFile(path.join(site, 'video.webm'), video);
  const c = client();
  siteCap = parseCapability((await putFolder(c, site, { chunkSize: 256 * KiB })).capability);
  await c.close();
  videoCap = await put(path.join(site, 'video.webm'), { chunkSize: 256 * KiB });

  gateway = new Gateway({
    nodes: () => storageNodesOf(stores.map((n) => n.relay)),
    open: (node) => connectStorageDirect({ host: node.address, port: node.storagePort, expectedIdentity: node.identity, timeoutMs: 2000 }),
    cacheBytes: 1024 * KiB, registry,
  });
  socks = await startSocks5Server({
    port: 0,
    onConnect: async (req) => {
      if (isBitcloudHost(req.host)) return gateway.connect(req.host);
      throw new Error('this test proxy serves .bitcloud hosts only');
    },
  });
}, 120_000);

afterAll(async () => {
  await socks?.close();
  await gateway?.close();
  for (const n of stores) { await n.endpoint.close(); await n.store.close(); }
  await fsp.rm(root, { recursive: true, force: true });
});

describe('folder listings (SPEC.md §9.15)', () => {
  const cap = parseCapability(formatCapability({ manifestId: Buffer.alloc(32, 1), fileKey: Buffer.alloc(32, 2) }));

  it('paths: no "..", ".", empty components, backslashes or control characters', () => {
    expect(folderPathProblem('a/b.html')).toBeNull();
    for (const bad of ['', '/a', 'a/', 'a//b', '../a', 'a/../b', './a', 'a\\b', 'a\u0000b', 'a\nb', 'x'.repeat(1025)]) expect(folderPathProblem(bad), bad).not.toBeNull();
  });

  it('round trip; malformed, duplicate, file-and-folder and oversized listings are refused', () => {
    const f = { entries: [{ path: 'b/c.txt', cap, size: 3 }, { path: 'a.html', cap, size: 1 }] };
    const back = decodeFolder(encodeFolder(f));
    expect(back.entries.map((e) => e.path)).toEqual(['a.html', 'b/c.txt']);
    expect(lookupFolder(back, 'b')).toEqual({ dir: true });
    expect(lookupFolder(back, 'nope')).toBeNull();
    const j = (entries: unknown[]) => Buffer.from(JSON.stringify({ version: 1, entries }));
    const capText = formatCapability(cap);
    expect(() => decodeFolder(Buffer.from('not json'))).toThrow(expect.objectContaining({ code: 'FOLDER_MALFORMED' }));
    expect(() => decodeFolder(Buffer.from('{"version":2,"entries":[]}'))).toThrow(expect.objectContaining({ code: 'FOLDER_MALFORMED' }));
    expect(() => decodeFolder(j([{ path: '../etc/passwd', cap: capText, size: 1 }]))).toThrow(expect.objectContaining({ code: 'FOLDER_MALFORMED' }));
    expect(() => decodeFolder(j([{ path: 'a', cap: capText, size: 1 }, { path: 'a', cap: capText, size: 1 }]))).toThrow(expect.objectContaining({ code: 'FOLDER_MALFORMED' }));
    expect(() => decodeFolder(j([{ path: 'a', cap: capText, size: 1 }, { path: 'a/b', cap: capText, size: 1 }]))).toThrow(expect.objectContaining({ code: 'FOLDER_MALFORMED' }));
    expect(() => decodeFolder(j([{ path: 'a', cap: 'bitcloud:xyz', size: 1 }]))).toThrow(expect.objectContaining({ code: 'FOLDER_MALFORMED' }));
    expect(() => decodeFolder(j(new Array(MAX_FOLDER_ENTRIES + 1).fill(0)))).toThrow(expect.objectContaining({ code: 'FOLDER_TOO_LARGE' }));
    expect(() => encodeFolder({ entries: [{ path: 'a/../b', cap, size: 1 }] })).toThrow(expect.objectContaining({ code: 'FOLDER_PATH_INVALID' }));
    // The encoder refuses a listing every reader would refuse (a file beside a folder of its name).
    expect(() => encodeFolder({ entries: [{ path: 'a/b', cap, size: 1 }, { path: 'a', cap, size: 1 }] })).toThrow(expect.objectContaining({ code: 'FOLDER_PATH_INVALID' }));
    expect(decodeFolder(encodeFolder({ entries: [{ path: 'a/b', cap, size: 1 }, { path: 'a/bc', cap, size: 1 }] })).entries).toHaveLength(2);
  });

  it('a listing that is not valid UTF-8, or a path with a lone surrogate, is refused (SPEC.md §9.15)', () => {
    const capText = formatCapability(cap);
    // Two different JS strings that both encode to the same UTF-8 bytes ("a" + U+FFFD).
    const twins = Buffer.from(JSON.stringify({ version: 1, entries: ['a\ud800', 'a\udc00'].map((path) => ({ path, cap: capText, size: 1 })) }));
    expect(twins.toString('latin1')).toContain('\\ud800');
    expect(() => decodeFolder(twins)).toThrow(expect.objectContaining({ code: 'FOLDER_MALFORMED' }));
    // Raw bytes that are not UTF-8 inside a path.
    const raw = Buffer.concat([Buffer.from(`{"version":1,"entries":[{"path":"a`), Buffer.from([0xff]), Buffer.from(`","cap":"${capText}","size":1}]}`)]);
    expect(() => decodeFolder(raw)).toThrow(expect.objectContaining({ code: 'FOLDER_MALFORMED' }));
    // The encoder refuses such a path too; a well-formed pair is fine.
    expect(() => encodeFolder({ entries: [{ path: 'a\ud800', cap, size: 1 }] })).toThrow(expect.objectContaining({ code: 'FOLDER_PATH_INVALID' }));
    expect(folderPathProblem('x\udc00y')).not.toBeNull();
    expect(decodeFolder(encodeFolder({ entries: [{ path: 'a\ud83d\ude00', cap, size: 1 }] })).entries[0].path).toBe('a\u{1f600}');
  });

  it('a file that is also a folder is refused wherever it sorts; names that only share a start are not', () => {
    const capText = formatCapability(cap);
    const j = (paths: string[]) => Buffer.from(JSON.stringify({ version: 1, entries: paths.map((path) => ({ path, cap: capText, size: 1 })) }));
    const ok = (paths: string[]) => decodeFolder(j(paths)).entries.map((e) => e.path);
    const refused = (paths: string[]) => expect(() => decodeFolder(j(paths)), paths.join(' ')).toThrow(expect.objectContaining({ code: 'FOLDER_MALFORMED' }));
    expect(ok(['a/b', 'a/bc'])).toEqual(['a/b', 'a/bc']);
    expect(ok(['a/b-c', 'a/b', 'a/b.c', 'a/b c', 'a/bc/d', 'a/b!/e'])).toHaveLength(6);
    refused(['a/b', 'a/b/c']);
    refused(['a/b/c', 'a/b']);
    // Names that sort between "a/b" and "a/b/c" when "/" is an ordinary character.
    refused(['a/b', 'a/b-c', 'a/b.c', 'a/b c', 'a/b!', 'a/b/c']);
    refused(['x', 'a/b/c/d/e', 'a/b/c', 'y']);
    refused(['a', 'a/b/c/d/e/f']);
  });

  it('a listing of deep paths as large as the limit decodes without stalling (SPEC.md §9.15)', () => {
    const capText = formatCapability(cap);
    const deep = 'a/'.repeat(498);
    const paths: string[] = [];
    let bytes = 0;
    for (let i = 0; bytes < MAX_FOLDER_BYTES - 2048; i++) {
      const path = deep + i.toString(36);
      paths.push(path);
      bytes += path.length + capText.length + 32;
    }
    const listing = Buffer.from(JSON.stringify({ version: 1, entries: paths.map((path) => ({ path, cap: capText, size: 1 })) }));
    expect(listing.length).toBeLessThanOrEqual(MAX_FOLDER_BYTES);
    expect(decodeFolder(listing).entries).toHaveLength(paths.length);
    const clash = Buffer.from(JSON.stringify({ version: 1, entries: [...paths, deep.slice(0, -1)].map((path) => ({ path, cap: capText, size: 1 })) }));
    expect(() => decodeFolder(clash)).toThrow(expect.objectContaining({ code: 'FOLDER_MALFORMED' }));
  }, 20_000);
});

describe('host names, paths, ranges, content types (SPEC.md §9.16)', () => {
  it('a capability is <file key>.<manifest id>.bitcloud, each label 52 characters (≤ 63)', () => {
    const cap = { manifestId: randomBytes(32), fileKey: randomBytes(32) };
    const host = capabilityHost(cap);
    expect(host.split('.').map((l) => l.length)).toEqual([52, 52, 8]);
    const back = parseCapabilityHost(host.toUpperCase() + '.');
    expect(back.manifestId.equals(cap.manifestId) && back.fileKey.equals(cap.fileKey)).toBe(true);
    expect(capabilityUrl(cap)).toBe(`http://${host}/`);
    for (const bad of ['x.bitcloud', `${base32Encode(cap.fileKey)}.bitcloud`, `a.${host}`, host.replace(/^./, '1'), host.slice(0, 51) + 'z' + host.slice(52)]) {
      expect(() => parseCapabilityHost(bad), bad).toThrow(expect.objectContaining({ code: 'GATEWAY_HOST_MALFORMED' }));
    }
    expect(isBitcloudHost('A.B.BITCLOUD')).toBe(true);
    expect(isBitcloudHost('bitcloud.example')).toBe(false);
    expect(isBitcloudHost('a.b.bitcloud..')).toBe(true);
    expect(isBitcloudHost('a.b.BITCLOUD...')).toBe(true);
  });

  it('request paths: percent-decoded, and ".", "..", encoded slashes and NUL refused', () => {
    expect(parseRequestPath('/')).toEqual({ path: '', dir: true });
    expect(parseRequestPath('/docs/deep/a%20b.txt?x=1#f')).toEqual({ path: 'docs/deep/a b.txt', dir: false });
    expect(parseRequestPath('/docs/')).toEqual({ path: 'docs', dir: true });
    for (const bad of ['/../x', '/a/%2e%2e/x', '/a%2fb', '/a%5cb', '/a%00', '/a//b', '/%zz', 'x']) {
      expect(() => parseRequestPath(bad), bad).toThrow(expect.objectContaining({ code: 'GATEWAY_PATH_INVALID' }));
    }
  });

  it('ranges: one range served, suffixes, clamped ends, 416 past the end, the rest ignored', () => {
    expect(parseRange(undefined, 100)).toEqual({ kind: 'none' });
    expect(parseRange('bytes=10-19', 100)).toEqual({ kind: 'range', start: 10, end: 19 });
    expect(parseRange('bytes=90-', 100)).toEqual({ kind: 'range', start: 90, end: 99 });
    expect(parseRange('bytes=-5', 100)).toEqual({ kind: 'range', start: 95, end: 99 });
    expect(parseRange('bytes=-500', 100)).toEqual({ kind: 'range', start: 0, end: 99 });
    expect(parseRange('bytes=0-99999999999999999999', 100)).toEqual({ kind: 'range', start: 0, end: 99 });
    expect(parseRange('bytes=100-', 100)).toEqual({ kind: 'unsatisfiable' });
    expect(parseRange('bytes=99999999999999999999-', 100)).toEqual({ kind: 'unsatisfiable' });
    expect(parseRange('bytes=-0', 100)).toEqual({ kind: 'unsatisfiable' });
    expect(parseRange('bytes=0-10,5-20', 100)).toEqual({ kind: 'none' }); // several (overlapping) ranges: whole file
    expect(parseRange('bytes=20-10', 100)).toEqual({ kind: 'none' });
    expect(parseRange('items=0-1', 100)).toEqual({ kind: 'none' });
    expect(parseRange('bytes=abc', 100)).toEqual({ kind: 'none' });
    // Numbers of any length: a huge end is clamped, a huge start is 416, b < a is compared exactly.
    expect(parseRange('bytes=0-999999999999999999999', 100)).toEqual({ kind: 'range', start: 0, end: 99 });
    expect(parseRange(`bytes=5-${'9'.repeat(400)}`, 100)).toEqual({ kind: 'range', start: 5, end: 99 });
    expect(parseRange('bytes=999999999999999999999-', 100)).toEqual({ kind: 'unsatisfiable' });
    expect(parseRange('bytes=10000000000000000000001-10000000000000000000000', 100)).toEqual({ kind: 'none' });
    expect(parseRange(`bytes=-${'9'.repeat(30)}`, 100)).toEqual({ kind: 'range', start: 0, end: 99 });
  });

  it('content types by extension, then a plain manifest type, else octet-stream', () => {
    expect(contentTypeFor('a/index.html')).toBe('text/html; charset=utf-8');
    expect(contentTypeFor('v.WEBM')).toBe('video/webm');
    expect(contentTypeFor('noext', 'text/plain')).toBe('text/plain');
    expect(contentTypeFor('noext', 'text/html\r\nX: y')).toBe('application/octet-stream');
  });
});

describe('put DIR / get CAP -o DIR (SPEC.md §9.15)', () => {
  it('a folder get asks placementFor once per content class, not once per file (SPEC.md §10.8)', async () => {
    const c = client();
    const calls: string[] = [];
    const r = await getFolder(c, siteCap, path.join(root, 'back-placement'), { placementFor: async (cls) => { calls.push(cls); return null; } });
    await c.close();
    expect(r.files).toBe(5);
    expect(calls).toHaveLength(1);
  });

  it('a folder get does not keep a failed placement lookup: the next file of the class asks again (SPEC.md §10.8)', async () => {
    const c = client();
    let calls = 0;
    const placementFor = async (): Promise<readonly string[] | null> => {
      calls++;
      if (calls === 1) throw err('POLICY_FETCH_FAILED', 'no moderator answered');
      return c.fingerprints;
    };
    const r = await getFolder(c, siteCap, path.join(root, 'back-placement-retry'), { placementFor });
    await c.close();
    expect(r.files).toBe(5);
    expect(calls).toBe(2); // the failure for the first file, then the answer kept for the other four
  });

  it('a folder comes back byte for byte, sub-folders and odd names included', async () => {
    const c = client();
    const out = path.join(root, 'back');
    const r = await getFolder(c, siteCap, out);
    await c.close();
    expect(r.files).toBe(5);
    for (const f of ['index.html', 'style.css', 'img/dot.png', 'docs/deep/a b.txt', 'video.webm']) {
      expect((await fsp.readFile(path.join(out, f))).equals(await fsp.readFile(path.join(site, f))), f).toBe(true);
    }
  });

  it('a symlink in the output folder to elsewhere is refused before anything is made there', async () => {
    const listing = path.join(root, 'through-link.json');
    await fsp.writeFile(listing, encodeFolder({ entries: [{ path: 'x/y/z', cap: videoCap, size: video.length }] }));
    const cap = await put(listing, { contentType: FOLDER_CONTENT_TYPE });
    const out = path.join(root, 'linked-out');
    const elsewhere = path.join(root, 'elsewhere');
    await fsp.mkdir(out);
    await fsp.mkdir(elsewhere);
    await fsp.symlink(elsewhere, path.join(out, 'x'));
    const c = client();
    try {
      await expect(getFolder(c, cap, out)).rejects.toMatchObject({ code: 'FOLDER_PATH_INVALID' });
    } finally { await c.close(); }
    expect(await fsp.readdir(elsewhere)).toEqual([]);
    // A symlink that stays inside the output folder is followed as before.
    const inner = path.join(root, 'linked-in');
    await fsp.mkdir(path.join(inner, 'real'), { recursive: true });
    await fsp.symlink(path.join(inner, 'real'), path.join(inner, 'x'));
    const c2 = client();
    try { expect((await getFolder(c2, cap, inner)).files).toBe(1); } finally { await c2.close(); }
    expect((await fsp.readFile(path.join(inner, 'real', 'y', 'z'))).equals(video)).toBe(true);
  });
});

describe('get CAP -o DIR where a file stands in the way (SPEC.md §9.15)', () => {
  it('a file named by -o, or on an entry\'s way, is IO_NOT_A_DIRECTORY naming it', async () => {
    const listing = path.join(root, 'file-in-way.json');
    await fsp.writeFile(listing, encodeFolder({ entries: [{ path: 'x/y/z', cap: videoCap, size: video.length }] }));
    const cap = await put(listing, { contentType: FOLDER_CONTENT_TYPE });
    const asFile = path.join(root, 'out-is-a-file');
    await fsp.writeFile(asFile, 'x');
    const out = path.join(root, 'out-with-file');
    await fsp.mkdir(out);
    await fsp.writeFile(path.join(out, 'x'), 'x');
    const c = client();
    try {
      for (const [o, blocking] of [[asFile, asFile], [path.join(asFile, 'sub'), asFile], [out, path.join(out, 'x')]]) {
        const e = await getFolder(c, cap, o).then(() => null, (x: unknown) => x);
        expect(e).toMatchObject({ code: 'IO_NOT_A_DIRECTORY' });
        expect((e as Error).message).toContain(blocking);
      }
    } finally { await c.close(); }
  });
});

describe('the gateway through a SOCKS5 proxy (SPEC.md §9.16)', () => {
  const siteHost = () => capabilityHost(siteCap);

  it('serves index.html for the folder, files with their content types, a listing, a redirect, 404', async () => {
    const index = await get(siteHost(), '/');
    expect(index.status).toBe(200);
    expect(index.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(index.body.toString()).toContain('<h1>hello</h1>');
    expect(index.headers['referrer-policy']).toBe('no-referrer');
    const css = await get(siteHost(), '/style.css');
    expect(css.headers['content-type']).toBe('text/css; charset=utf-8');
    const png = await get(siteHost(), '/img/dot.png');
    expect(png.headers['content-type']).toBe('image/png');
    expect(png.body.equals(await fsp.readFile(path.join(site, 'img', 'dot.png')))).toBe(true);
    const spaced = await get(siteHost(), '/docs/deep/a%20b.txt');
    expect(spaced.body.toString()).toBe('spaced name');
    const redirect = await get(siteHost(), '/docs');
    expect(redirect.status).toBe(301);
    expect(redirect.headers.location).toBe('/docs/');
    const listing = await get(siteHost(), '/docs/deep/');
    expect(listing.status).toBe(200);
    expect(listing.body.toString()).toContain('href="a%20b.txt"');
    expect((await get(siteHost(), '/missing.html')).status).toBe(404);
    expect((await get(siteHost(), '/style.css/x')).status).toBe(404);
  });

  it('ranges: exactly the bytes asked, 206 with Content-Range; 416 past the end; several ranges → 200 whole', async () => {
    const host = siteHost();
    const r = await get(host, '/video.webm', ['-r', '1000-1999']);
    expect(r.status).toBe(206);
    expect(r.headers['content-range']).toBe(`bytes 1000-1999/${video.length}`);
    expect(r.body.equals(video.subarray(1000, 2000))).toBe(true);
    // Across chunk boundaries (chunks are 256 KiB), and a suffix range.
    const mid = Math.floor(video.length / 2);
    const across = await get(host, '/video.webm', ['-r', `${mid - 300_000}-${mid + 300_000}`]);
    expect(across.body.equals(video.subarray(mid - 300_000, mid + 300_001))).toBe(true);
    const tail = await get(host, '/video.webm', ['-r', '-100']);
    expect(tail.body.equals(video.subarray(video.length - 100))).toBe(true);
    const huge = await get(host, '/video.webm', ['-H', 'Range: bytes=5-99999999999999999999']);
    expect(huge.status).toBe(206);
    expect(huge.body.equals(video.subarray(5))).toBe(true);
    const past = await get(host, '/video.webm', ['-r', `${video.length}-`]);
    expect(past.status).toBe(416);
    expect(past.headers['content-range']).toBe(`bytes */${video.length}`);
    const many = await get(host, '/video.webm', ['-r', '0-10,5-20']);
    expect(many.status).toBe(200);
    expect(many.body.equals(video)).toBe(true);
  });

  it('ETag from the content id, 304 on If-None-Match, HEAD without a body; a single-file capability too', async () => {
    const host = capabilityHost(videoCap);
    const head = await get(host, '/', ['-I']);
    expect(head.status).toBe(200);
    expect(head.headers.etag).toBe(`"${videoCap.manifestId.toString('hex')}"`);
    expect(Number(head.headers['content-length'])).toBe(video.length);
    expect(head.headers['accept-ranges']).toBe('bytes');
    expect(head.headers['content-type']).toBe('video/webm');
    const again = await get(host, '/', ['-H', `If-None-Match: ${head.headers.etag}`]);
    expect(again.status).toBe(304);
    const r = await get(host, '/', ['-r', '262140-262150']);
    expect(r.body.equals(video.subarray(262_140, 262_151))).toBe(true);
    expect((await get(host, '/other')).status).toBe(404);
  });

  it('bad input: malformed hosts 400, a wrong key 403, an unknown id 404, traversal 400, other methods 405', async () => {
    expect((await get('nope.bitcloud', '/')).status).toBe(400);
    expect((await get(`${'a'.repeat(52)}.bitcloud`, '/')).status).toBe(400);
    const [, id] = siteHost().split('.');
    expect((await get(`${'7'.repeat(52)}.${id}.bitcloud`, '/')).status).toBe(400); // non-zero trailing bits
    const wrong = await get(`${base32Encode(randomBytes(32))}.${id}.bitcloud`, '/');
    expect(wrong.status).toBe(403);
    expect(wrong.body.toString()).toContain('CHUNK_AUTH_FAILED');
    expect((await get(capabilityHost({ manifestId: randomBytes(32), fileKey: randomBytes(32) }), '/')).status).toBe(404);
    for (const p of ['/../index.html', '/img/..%2f..%2findex.html', '/img%2fdot.png', '/%2e%2e/x', '/a%5cb', '/a%00b']) {
      expect((await get(siteHost(), p)).status, p).toBe(400);
    }
    expect((await get(siteHost(), '/', ['-X', 'POST'])).status).toBe(405);
  });

  it('bad folders: a listing naming a folder (no nesting, no loops) and a malformed listing are 502', async () => {
    const nested = path.join(root, 'nested.json');
    await fsp.writeFile(nested, encodeFolder({ entries: [{ path: 'inner', cap: siteCap, size: 1 }, { path: 'self.txt', cap: videoCap, size: video.length }] }));
    const nestedCap = await put(nested, { contentType: FOLDER_CONTENT_TYPE });
    const r = await get(capabilityHost(nestedCap), '/inner');
    expect(r.status).toBe(502);
    expect(r.body.toString()).toContain('FOLDER_NESTED');
    expect((await get(capabilityHost(nestedCap), '/self.txt', ['-r', '0-9'])).body.equals(video.subarray(0, 10))).toBe(true);
    const broken = path.join(root, 'broken.json');
    await fsp.writeFile(broken, JSON.stringify({ version: 1, entries: [{ path: '../../x', cap: formatCapability(videoCap), size: 1 }] }));
    const brokenCap = await put(broken, { contentType: FOLDER_CONTENT_TYPE });
    const b = await get(capabilityHost(brokenCap), '/');
    expect(b.status).toBe(502);
    expect(b.body.toString()).toContain('FOLDER_MALFORMED');
  });

  it('a listing of millions of entries is refused from its size alone (502 FOLDER_TOO_LARGE), never read whole', async () => {
    const big = path.join(root, 'big.json');
    const fh = await fsp.open(big, 'w');
    await fh.truncate(17 * 1024 * KiB); // 17 MiB of zeros: larger than any valid listing
    await fh.close();
    const bigCap = await put(big, { contentType: FOLDER_CONTENT_TYPE, chunkSize: 4096 * KiB });
    const before = gateway.reader.stats.sharesFetched;
    const r = await get(capabilityHost(bigCap), '/');
    expect(r.status).toBe(502);
    expect(r.body.toString()).toContain('FOLDER_TOO_LARGE');
    // Only the root and the manifest were read: no data chunk of the 17 MiB.
    expect(gateway.reader.stats.sharesFetched - before).toBeLessThan(10);
  }, 120_000);

  it('the chunk cache: a repeated read hits it, its size stays within the bound, a seek fetches only its chunks', async () => {
    const host = capabilityHost(videoCap);
    const samples = async () => parsePrometheus(await registry.metrics());
    const s0 = await samples();
    await get(host, '/', ['-r', '2000000-2000099']);
    const s1 = await samples();
    await get(host, '/', ['-r', '2000000-2000099']);
    const s2 = await samples();
    const d = (a: typeof s0, b: typeof s0, result: string) => metric(b, 'bitcloud_gateway_cache_lookups_total', { result }) - metric(a, 'bitcloud_gateway_cache_lookups_total', { result });
    expect(d(s1, s2, 'hit')).toBeGreaterThanOrEqual(1);
    expect(d(s1, s2, 'miss')).toBe(0);
    // The seek needed chunk 7 (and read ahead at most 2 more), not the 7 before it.
    expect(d(s0, s1, 'miss') + d(s0, s1, 'hit')).toBeLessThanOrEqual(3);
    expect(gateway.reader.cachedBytes).toBeLessThanOrEqual(1024 * KiB);
    expect(metric(s2, 'bitcloud_gateway_range_requests_total')).toBeGreaterThan(0);
  });

  it('a request that fails before its first body byte is counted once, under the status it was answered with', async () => {
    const file = path.join(root, 'lost.bin');
    await fsp.writeFile(file, randomBytes(100 * KiB));
    const cap = await put(file, { chunkSize: 256 * KiB });
    // Every share of the one data chunk disappears from the disks: the root and manifest still read.
    const c = client();
    const m = await fetchManifest(c, cap, { corruptShares: 0, missingShares: 0, sharesFetched: 0 });
    await c.close();
    for (const id of m.layout.chunks[0].shareIds) {
      const hex = id.toString('hex');
      for (let i = 0; i < stores.length; i++) await fsp.rm(path.join(root, `node${i}`, 'shares', hex.slice(0, 2), hex.slice(2, 4), hex), { force: true });
    }
    const samples = async () => parsePrometheus(await registry.metrics());
    const count = (s: Awaited<ReturnType<typeof samples>>, status: string) => metric(s, 'bitcloud_gateway_requests_total', { status });
    const s0 = await samples();
    const r = await get(capabilityHost(cap), '/', ['-r', '0-99']);
    expect(r.status).toBe(503);
    const s1 = await samples();
    expect(count(s1, '503') - count(s0, '503')).toBe(1);
    expect(count(s1, '200') - count(s0, '200')).toBe(0);
    expect(count(s1, '206') - count(s0, '206')).toBe(0);
    expect(metric(s1, 'bitcloud_gateway_range_requests_total') - metric(s0, 'bitcloud_gateway_range_requests_total')).toBe(0);
  }, 60_000);
});

describe('the gateway\'s manifest cache (SPEC.md §9.16.4)', () => {
  it('is bounded in bytes: manifests summing over the bound leave at most the bound cached; one over the entry cap is used, not kept', async () => {
    const caps: Capability[] = [];
    for (let i = 0; i < 6; i++) {
      const file = path.join(root, `manifest-cache-${i}.bin`);
      await fsp.writeFile(file, randomBytes(2 * KiB));
      caps.push(await put(file));
    }
    const c = client();
    try {
      const stats = { corruptShares: 0, missingShares: 0, sharesFetched: 0 };
      // Each counts for the memory its decoded form takes (one chunk here).
      const entry = Math.max(...await Promise.all(caps.map(async (cap) => {
        const r = await fetchRoot(c, cap, stats);
        return manifestMemoryBytes(await fetchManifest(c, cap, stats, r), r.size);
      })));
      const bound = Math.floor(2.5 * entry);
      const reader = new BlobReader({ client: () => c, manifestCacheBytes: bound });
      for (const cap of caps) {
        await reader.manifest(cap);
        expect(reader.cachedManifestBytes).toBeGreaterThan(0);
        expect(reader.cachedManifestBytes).toBeLessThanOrEqual(bound);
      }
      // The first was pushed out: it is fetched again (its root share asked anew).
      const gets = vi.spyOn(c, 'getShare');
      await reader.manifest(caps[0]);
      expect(gets.mock.calls.some(([, id]) => id.equals(caps[0].manifestId))).toBe(true);
      gets.mockRestore();

      const small = new BlobReader({ client: () => c, manifestEntryBytes: entry - 20 });
      expect((await small.manifest(caps[1])).layout.size).toBe(2 * KiB);
      expect(small.cachedManifestBytes).toBe(0);
    } finally {
      await c.close();
    }
  });

  it('counts a manifest for the memory its decoded form takes, not its encoded length: a many-chunk manifest counts for over 4 times its length', async () => {
    // 128 chunks of 1 KiB at 4-of-6: 768 share ids, each a Buffer of its own once decoded.
    const file = path.join(root, 'manifest-cache-many-chunks.bin');
    await fsp.writeFile(file, randomBytes(128 * KiB));
    const cap = await put(file, { chunkSize: KiB });
    const c = client();
    try {
      const encoded = (await fetchRoot(c, cap, { corruptShares: 0, missingShares: 0, sharesFetched: 0 })).size;
      const reader = new BlobReader({ client: () => c });
      const m = await reader.manifest(cap);
      expect(m.layout.chunks.length).toBe(128);
      // Measured on Node 20 (SPEC.md §9.16.4): the decoded bytes stay held (the share ids are views
      // of them), and each chunk takes about 105 bytes more, each of its share ids about 104.
      const measured = encoded + 128 * (105 + 104 * 6);
      expect(reader.cachedManifestBytes).toBeGreaterThanOrEqual(measured);
      expect(reader.cachedManifestBytes).toBeGreaterThan(4 * encoded);
      // Three of them overfill a bound of 2.5 such entries: the first is pushed out.
      const bounded = new BlobReader({ client: () => c, manifestCacheBytes: Math.floor(2.5 * reader.cachedManifestBytes) });
      const caps = [cap];
      for (let i = 0; i < 2; i++) {
        const more = path.join(root, `manifest-cache-many-chunks-${i}.bin`);
        await fsp.writeFile(more, randomBytes(128 * KiB));
        caps.push(await put(more, { chunkSize: KiB }));
      }
      for (const x of caps) await bounded.manifest(x);
      expect(bounded.cachedManifestBytes).toBeLessThanOrEqual(Math.floor(2.5 * reader.cachedManifestBytes));
      const gets = vi.spyOn(c, 'getShare');
      await bounded.manifest(caps[0]);
      expect(gets.mock.calls.some(([, id]) => id.equals(caps[0].manifestId))).toBe(true);
      gets.mockRestore();
    } finally {
      await c.close();
    }
  }, 60_000);

  it('a manifest used but not kept is fetched once for its request: reading a range of its file does not fetch it again', async () => {
    const file = path.join(root, 'manifest-cache-range.bin');
    const data = randomBytes(3 * KiB);
    await fsp.writeFile(file, data);
    const cap = await put(file);
    const c = client();
    try {
      const reader = new BlobReader({ client: () => c, manifestEntryBytes: 1 });
      const m = await reader.manifest(cap);
      expect(reader.cachedManifestBytes).toBe(0);
      const gets = vi.spyOn(c, 'getShare');
      const parts: Buffer[] = [];
      for await (const b of reader.range(cap, m, 100, 2 * KiB)) parts.push(b);
      expect(Buffer.concat(parts).equals(data.subarray(100, 2 * KiB + 1))).toBe(true);
      expect(gets.mock.calls.some(([, id]) => id.equals(cap.manifestId))).toBe(false);
      gets.mockRestore();
    } finally {
      await c.close();
    }
  });
});

describe('the gateway\'s folder listing cache (SPEC.md §9.16.4)', () => {
  it('is bounded in bytes: listings summing over the bound leave at most the bound cached; one over the entry cap is used, not kept', async () => {
    const caps: Capability[] = [];
    const c = client();
    try {
      for (let i = 0; i < 5; i++) {
        const dir = path.join(root, `folder-cache-${i}`);
        await fsp.mkdir(dir, { recursive: true });
        for (let j = 0; j <= i; j++) await fsp.writeFile(path.join(dir, `file-${j}.txt`), `folder ${i} file ${j}`);
        caps.push(parseCapability((await putFolder(c, dir)).capability));
      }
      // Each counts for the memory its decoded entries take.
      const probe = new BlobReader({ client: () => c, cacheBytes: 0 });
      const sizes = await Promise.all(caps.map(async (cap) => folderMemoryBytes(await probe.folder(cap, await probe.manifest(cap)))));
      const bound = Math.floor(2.5 * Math.max(...sizes));
      const reader = new BlobReader({ client: () => c, cacheBytes: 0, folderCacheBytes: bound });
      for (const [i, cap] of caps.entries()) {
        const m = await reader.manifest(cap);
        expect((await reader.folder(cap, m)).entries.length).toBe(i + 1);
        expect(reader.cachedFolderBytes).toBeGreaterThan(0);
        expect(reader.cachedFolderBytes).toBeLessThanOrEqual(bound);
      }
      // The first was pushed out: its listing is fetched again (its chunk shares asked anew).
      const m0 = await reader.manifest(caps[0]);
      const gets = vi.spyOn(c, 'getShare');
      expect((await reader.folder(caps[0], m0)).entries.length).toBe(1);
      expect(gets.mock.calls.length).toBeGreaterThan(0);
      gets.mockRestore();

      const small = new BlobReader({ client: () => c, cacheBytes: 0, folderEntryBytes: Math.min(...sizes) - 1 });
      const m1 = await small.manifest(caps[1]);
      expect((await small.folder(caps[1], m1)).entries.length).toBe(2);
      expect(small.cachedFolderBytes).toBe(0);
    } finally {
      await c.close();
    }
  });

  it('counts a listing for the memory its decoded entries take, not its encoded length', async () => {
    const n = 2000;
    const listing = encodeFolder({ entries: Array.from({ length: n }, (_, i) => ({ path: `f${i}.txt`, cap: videoCap, size: video.length })) });
    const file = path.join(root, 'folder-cache-many.json');
    await fsp.writeFile(file, listing);
    const cap = await put(file, { contentType: FOLDER_CONTENT_TYPE });
    const c = client();
    try {
      const reader = new BlobReader({ client: () => c, cacheBytes: 0 });
      const m = await reader.manifest(cap);
      expect((await reader.folder(cap, m)).entries.length).toBe(n);
      // Measured on Node 20 (SPEC.md §9.16.4): an entry takes about 346 bytes besides its path.
      expect(reader.cachedFolderBytes).toBeGreaterThanOrEqual(n * 346);
      expect(reader.cachedFolderBytes).toBeGreaterThan(2 * listing.length);
      // A bound below that keeps nothing, though the encoded listing would fit.
      const small = new BlobReader({ client: () => c, cacheBytes: 0, folderCacheBytes: 2 * listing.length });
      expect((await small.folder(cap, await small.manifest(cap))).entries.length).toBe(n);
      expect(small.cachedFolderBytes).toBe(0);
    } finally {
      await c.close();
    }
  }, 60_000);
});

describe('the gateway\'s HTTP timeouts (SPEC.md §9.16, §6.10)', () => {
  /** A gateway with short timeouts, and a stream to it; `closed` settles when the gateway ends the stream. */
  function open(): { gw: Gateway; s: ReturnType<Gateway['connect']>; got: () => string; closed: Promise<void> } {
    const gw = new Gateway({
      nodes: () => [], open: () => Promise.reject(err('STORAGE_TIMEOUT', 'none')),
      httpTimeouts: { keepAliveTimeout: 100, headersTimeout: 200, requestTimeout: 300, connectionsCheckingInterval: 50 },
    });
    const s = gw.connect('not-a-capability.bitcloud');
    let text = '';
    s.on('data', (b: Buffer) => { text += b.toString('latin1'); });
    const closed = new Promise<void>((resolve) => { s.once('end', resolve); s.once('close', resolve); });
    return { gw, s, got: () => text, closed };
  }
  const within = (p: Promise<void>, ms: number) => Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);

  it('an idle keep-alive connection is closed after keepAliveTimeout', async () => {
    const { gw, s, got, closed } = open();
    try {
      s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      expect(await within(closed, 5000)).toBe(true);
      expect(got()).toMatch(/^HTTP\/1\.1 400 /); // answered (GATEWAY_HOST_MALFORMED), then dropped once idle
    } finally {
      s.destroy();
      await gw.close();
    }
  });

  it('an idle connection is ended, not reset: a TCP client through SOCKS reads the answer, then EOF (SPEC.md §9.16)', async () => {
    const gw = new Gateway({
      nodes: () => [], open: () => Promise.reject(err('STORAGE_TIMEOUT', 'none')),
      httpTimeouts: { keepAliveTimeout: 100, headersTimeout: 200, requestTimeout: 300, connectionsCheckingInterval: 50 },
    });
    const px = await startSocks5Server({ port: 0, onConnect: async (req) => gw.connect(req.host) });
    const c = net.connect(px.address.port, '127.0.0.1');
    try {
      let text = '';
      let handshake = Buffer.alloc(0);
      const ended = new Promise<string>((resolve) => {
        c.on('data', (b: Buffer) => { if (handshake.length < 12) handshake = Buffer.concat([handshake, b]); else text += b.toString('latin1'); });
        c.once('end', () => resolve('end'));
        c.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
      });
      await new Promise<void>((r) => c.once('connect', () => r()));
      const host = Buffer.from('not-a-capability.bitcloud');
      // SOCKS5: no authentication (2 bytes back), CONNECT host:80 (10 bytes back), then HTTP.
      c.write(Buffer.concat([Buffer.from([5, 1, 0]), Buffer.from([5, 1, 0, 3, host.length]), host, Buffer.from([0, 80])]));
      await expect.poll(() => handshake.length, { timeout: 5000 }).toBeGreaterThanOrEqual(12);
      text = handshake.subarray(12).toString('latin1');
      c.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      expect(await Promise.race([ended, new Promise<string>((r) => setTimeout(() => r('still open'), 5000))])).toBe('end');
      expect(text).toMatch(/^HTTP\/1\.1 400 /); // answered (GATEWAY_HOST_MALFORMED) whole, then EOF once idle
      const [head, body] = [text.slice(0, text.indexOf('\r\n\r\n')), text.slice(text.indexOf('\r\n\r\n') + 4)];
      expect(Buffer.byteLength(body, 'latin1')).toBe(Number(/content-length: (\d+)/i.exec(head)![1]));
    } finally {
      c.destroy();
      await px.close();
      await gw.close();
    }
  });

  it('an idle connection whose client never reads is dropped after the close grace', async () => {
    const gw = new Gateway({
      nodes: () => [], open: () => Promise.reject(err('STORAGE_TIMEOUT', 'none')),
      httpTimeouts: { keepAliveTimeout: 100, headersTimeout: 200, requestTimeout: 300, connectionsCheckingInterval: 50 },
      closeGraceMs: 200,
    });
    const s = gw.connect('not-a-capability.bitcloud');
    const gone = new Promise<void>((resolve) => { s.once('close', resolve); });
    try {
      s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'); // the answer is never read
      expect(await within(gone, 5000)).toBe(true);
      expect(s.readableEnded).toBe(false);
    } finally {
      s.destroy();
      await gw.close();
    }
  });

  it('a request whose headers never end is answered 408 and closed after headersTimeout', async () => {
    const { gw, s, got, closed } = open();
    try {
      s.write('GET / HTTP/1.1\r\nHost: x\r\n');
      expect(await within(closed, 5000)).toBe(true);
      expect(got()).toMatch(/^HTTP\/1\.1 408 /);
    } finally {
      s.destroy();
      await gw.close();
    }
  });

  it('after the 408 the stream is closed whole, though the client keeps its side open and sends nothing more', async () => {
    const { gw, s, got } = open();
    const gone = new Promise<void>((resolve) => { s.once('close', resolve); });
    try {
      s.write('GET / HTTP/1.1\r\nHost: x\r\n');
      expect(await within(gone, 5000)).toBe(true);
      expect(got()).toMatch(/^HTTP\/1\.1 408 /);
      expect(s.readableEnded).toBe(true); // the answer and its end came first: the SOCKS client sees EOF, not a reset
    } finally {
      s.destroy();
      await gw.close();
    }
  });

  it('its server\'s \'listening\' event is never emitted: the server never listens, and the timeout checks start without it', async () => {
    // A 'listening' emitted by hand for a server that is not listening runs every listener for it
    // (a library's, or Node's own again on a real listen): it must fire once per listen, here never.
    const emit = vi.spyOn(http.Server.prototype, 'emit');
    try {
      const { gw, s, got, closed } = open();
      try {
        s.write('GET / HTTP/1.1\r\nHost: x\r\n'); // headers never end: the 408 shows the checks run
        expect(await within(closed, 5000)).toBe(true);
        expect(got()).toMatch(/^HTTP\/1\.1 408 /);
        expect(emit.mock.calls.filter(([event]) => (event as string) === 'listening')).toHaveLength(0);
      } finally {
        s.destroy();
        await gw.close();
      }
    } finally {
      emit.mockRestore();
    }
  });

  it('a malformed request is answered 400 and the stream closed whole, though the client keeps its side open', async () => {
    const { gw, s, got } = open();
    const gone = new Promise<void>((resolve) => { s.once('close', resolve); });
    try {
      s.write('NOT HTTP AT ALL\r\n\r\n');
      expect(await within(gone, 5000)).toBe(true);
      expect(got()).toMatch(/^HTTP\/1\.1 400 /);
      expect(s.readableEnded).toBe(true);
    } finally {
      s.destroy();
      await gw.close();
    }
  });
});
