// Issue 18 "done when": a folder is stored with `bitcloud put DIR`, read back with `bitcloud get
// CAP -o DIR`, and opened through the network's real SOCKS proxy (`bitcloud proxy`, a separate
// process) at its `.bitcloud` URL: by curl (exact byte ranges) and by headless Chromium (Debian's
// `chromium`, driven by puppeteer-core: the page renders with its image and stylesheet, a <video>
// plays and seeks to its middle with range requests seen by the proxy). Every daemon is real; the
// storage reads go over circuits. Screenshots are kept in test-artifacts/.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import puppeteer, { type Browser } from 'puppeteer-core';
import { startLocalNet, curl, viaSocks, scrape, metric, type LocalNet } from '../helpers/localnet';
import { runCli, REPO_ROOT } from '../helpers/daemon';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = path.join(REPO_ROOT, 'test-artifacts');
let net: LocalNet;
let site: string;
let url: string;
let browser: Browser | null = null;
let profile: string;

function ffmpeg(args: string[]): void {
  const r = spawnSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ffmpeg failed: ${r.stderr || r.error}`);
}

beforeAll(async () => {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  // The site: a page with a stylesheet and an image, and a page with a 20 s VP8 video (one
  // keyframe a second, so a seek lands quickly), both made here by ffmpeg from its test sources.
  site = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-site-'));
  fs.writeFileSync(path.join(site, 'index.html'), '<!doctype html><html><head><link rel="stylesheet" href="style.css"><title>WeTube</title></head>'
    + '<body><h1 id="t">Stored on Bitcloud</h1><img id="logo" src="img/logo.png" width="64" height="64"><p><a href="watch/">watch</a></p></body></html>');
  fs.writeFileSync(path.join(site, 'style.css'), '#t { color: rgb(200, 30, 40); } body { background: rgb(240, 240, 250); }');
  fs.mkdirSync(path.join(site, 'img'));
  ffmpeg(['-f', 'lavfi', '-i', 'testsrc=size=64x64:rate=1', '-frames:v', '1', path.join(site, 'img', 'logo.png')]);
  fs.mkdirSync(path.join(site, 'watch'));
  fs.writeFileSync(path.join(site, 'watch', 'index.html'), '<!doctype html><html><body><video id="v" src="../video.webm" muted playsinline preload="auto" width="320" height="240"></video></body></html>');
  ffmpeg(['-f', 'lavfi', '-i', 'testsrc=duration=20:size=320x240:rate=10', '-c:v', 'libvpx', '-b:v', '300k', '-g', '10', '-an', path.join(site, 'video.webm')]);

  net = await startLocalNet({ relays: 4, exits: 1, storage: 6, timeoutMs: 240_000 });
}, 360_000);

afterAll(async () => {
  await browser?.close().catch(() => {});
  if (profile) fs.rmSync(profile, { recursive: true, force: true });
  await net?.stop();
  if (site) fs.rmSync(site, { recursive: true, force: true });
}, 60_000);

describe('folders through the CLI (SPEC.md §9.15)', () => {
  it('put DIR prints one capability and a .bitcloud url; get CAP -o DIR gives the folder back', async () => {
    // Small chunks, so the video spans many chunks and seeking has something to skip.
    const put = await runCli('bitcloud', ['put', site, '--json', '--chunk-size', String(64 * 1024), '--config', net.clientConfig], { timeoutMs: 240_000 });
    expect(put.code, put.stderr + put.stdout).toBe(0);
    const j = JSON.parse(put.stdout.trim().split('\n').pop()!) as { capability: string; url: string; folder: boolean; files: number };
    expect(j.folder).toBe(true);
    expect(j.files).toBe(5);
    expect(j.url).toMatch(/^http:\/\/[a-z2-7]{52}\.[a-z2-7]{52}\.bitcloud\/$/);
    url = j.url;

    const out = path.join(net.dir, 'site-back');
    const get = await runCli('bitcloud', ['get', j.capability, '-o', out, '--json', '--config', net.clientConfig], { timeoutMs: 240_000 });
    expect(get.code, get.stderr + get.stdout).toBe(0);
    for (const f of ['index.html', 'style.css', 'img/logo.png', 'watch/index.html', 'video.webm']) {
      expect(fs.readFileSync(path.join(out, f)).equals(fs.readFileSync(path.join(site, f))), f).toBe(true);
    }
  }, 480_000);
});

describe('the .bitcloud gateway of the real SOCKS proxy (SPEC.md §9.16)', () => {
  it('curl --socks5-hostname -r 1000-1999 returns exactly those bytes; bad hosts and paths get their statuses', async () => {
    const video = fs.readFileSync(path.join(site, 'video.webm'));
    const r = await curl(['-sS', '-f', ...viaSocks(net.socksPort), '-r', '1000-1999', `${url}video.webm`], { timeoutMs: 180_000 });
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout.equals(video.subarray(1000, 2000))).toBe(true);
    const whole = await curl(['-sS', '-f', ...viaSocks(net.socksPort), url], { timeoutMs: 180_000 });
    expect(whole.stdout.toString()).toContain('Stored on Bitcloud');
    const status = async (u: string, extra: string[] = []) => (await curl(['-s', '-o', '/dev/null', '-w', '%{http_code}', '--path-as-is', ...viaSocks(net.socksPort), ...extra, u], { timeoutMs: 180_000 })).stdout.toString();
    expect(await status(`${url}nope.html`)).toBe('404');
    expect(await status(`${url}img/..%2f..%2fsecret`)).toBe('400');
    expect(await status('http://not-a-capability.bitcloud/')).toBe('400');
    const [, id] = new URL(url).hostname.split('.');
    expect(await status(`http://${'a'.repeat(52)}.${id}.bitcloud/`)).toBe('403'); // wrong key: a page, not a hang
    expect(await status(`${url}video.webm`, ['-r', `${video.length}-`])).toBe('416');
  }, 480_000);

  it('headless Chromium through the proxy: the page renders with its stylesheet and image', async () => {
    profile = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-chromium-'));
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      userDataDir: profile,
      args: ['--no-sandbox', '--headless', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required',
        `--proxy-server=socks5://127.0.0.1:${net.socksPort}`],
    });
    const page = await browser.newPage();
    page.setDefaultTimeout(180_000);
    const res = await page.goto(url, { waitUntil: 'load', timeout: 180_000 });
    expect(res?.status()).toBe(200);
    // Browser-side code is passed as text (the project's type check has no DOM library).
    const seen = await page.evaluate(`(() => {
      const h = document.getElementById('t');
      const img = document.getElementById('logo');
      return { color: getComputedStyle(h).color, img: img.complete && img.naturalWidth > 0, natural: img.naturalWidth };
    })()`) as { color: string; img: boolean; natural: number };
    expect(seen.color).toBe('rgb(200, 30, 40)');
    expect(seen.img).toBe(true);
    expect(seen.natural).toBe(64);
    await page.screenshot({ path: path.join(ARTIFACTS, 'gateway-site.png') });
    await page.close();
  }, 300_000);

  it('a <video> of the stored file plays and seeks to its middle, with range requests seen by the proxy', async () => {
    expect(browser).not.toBeNull();
    const before = metric(await scrape(net.proxy.ports.metrics), 'bitcloud_gateway_range_requests_total');
    const page = await browser!.newPage();
    page.setDefaultTimeout(180_000);
    await page.goto(`${url}watch/`, { waitUntil: 'load', timeout: 180_000 });
    const played = await page.evaluate(`(async () => {
      const v = document.getElementById('v');
      const event = (name) => new Promise((resolve, reject) => {
        v.addEventListener(name, () => resolve(), { once: true });
        v.addEventListener('error', () => reject(new Error('media error ' + (v.error && v.error.code) + ': ' + (v.error && v.error.message))), { once: true });
      });
      if (v.readyState < 1) await event('loadedmetadata');
      const duration = v.duration;
      await v.play();
      const t0 = v.currentTime;
      await new Promise((resolve) => { const f = () => { if (v.currentTime > t0) resolve(); else requestAnimationFrame(f); }; f(); });
      const seeked = event('seeked');
      v.currentTime = duration / 2;
      await seeked;
      await new Promise((resolve) => { const f = () => { if (v.readyState >= 2) resolve(); else requestAnimationFrame(f); }; f(); });
      return { duration, after: v.currentTime, readyState: v.readyState, w: v.videoWidth };
    })()`) as { duration: number; after: number; readyState: number; w: number };
    expect(played.duration).toBeGreaterThan(19);
    expect(played.after).toBeGreaterThanOrEqual(played.duration / 2 - 0.5);
    expect(played.readyState).toBeGreaterThanOrEqual(2);
    expect(played.w).toBe(320);
    await page.screenshot({ path: path.join(ARTIFACTS, 'gateway-video.png') });
    await page.close();
    const after = metric(await scrape(net.proxy.ports.metrics), 'bitcloud_gateway_range_requests_total');
    expect(after).toBeGreaterThan(before);
  }, 300_000);

  it('the authority status page draws its plots (uPlot served by the authority) and keeps its tables', async () => {
    expect(browser).not.toBeNull();
    const auth = net.authorities[0];
    const page = await browser!.newPage();
    page.setDefaultTimeout(180_000);
    // Loopback addresses are not sent through the SOCKS proxy (Chromium's default bypass).
    await page.goto(`http://127.0.0.1:${auth.ports.http}/`, { waitUntil: 'load', timeout: 180_000 });
    await page.waitForFunction('document.querySelectorAll(\'[data-drawn="true"] canvas\').length >= 2', { timeout: 120_000 });
    const drawn = await page.evaluate(`(() => {
      const out = [];
      for (const box of document.querySelectorAll('[data-drawn="true"]')) {
        const c = box.querySelector('canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let ink = 0;
        for (let i = 3; i < d.length; i += 4) if (d[i] > 0) ink++;
        out.push({ id: box.id, w: c.width, ink });
      }
      return { plots: out, tables: document.querySelectorAll('table').length };
    })()`) as { plots: Array<{ id: string; w: number; ink: number }>; tables: number };
    expect(drawn.plots.map((p) => p.id)).toContain('plot-relays');
    for (const p of drawn.plots) expect(p.ink, p.id).toBeGreaterThan(100); // lines, axes and labels were drawn
    expect(drawn.tables).toBeGreaterThanOrEqual(3);
    await page.screenshot({ path: path.join(ARTIFACTS, 'status-page.png'), fullPage: true });
    await page.close();
  }, 300_000);
});
