import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  PackageWindow, DeliverWindow, CIRCUIT_WINDOW_START, STREAM_WINDOW_START, SENDME_DIGEST_LEN,
} from '../../src/circuit/sendme';
import { isBitcloudError } from '../../src/errors';

/** A stand-in for the running relay digest after cell n (both ends compute the same). */
function digestOf(n: number): Buffer {
  const d = Buffer.alloc(SENDME_DIGEST_LEN);
  d.writeUInt32BE(n, 0);
  d.fill(n & 0xff, 4);
  return d;
}

function codeOf(f: () => unknown): string | undefined {
  try { f(); } catch (e) { return isBitcloudError(e) ? e.code : 'NOT_BITCLOUD'; }
  return undefined;
}

function send(w: PackageWindow, from: number, count: number): void {
  for (let i = from; i < from + count; i++) w.onDataSent(digestOf(i));
}
function recv(w: DeliverWindow, from: number, count: number): void {
  for (let i = from; i < from + count; i++) w.onDataReceived(digestOf(i));
}

describe('circuit package window (SPEC §7.4.1)', () => {
  it('starts at 1000 and blocks after 1000 DATA cells without SENDME', () => {
    const w = new PackageWindow('circuit');
    expect(w.window).toBe(CIRCUIT_WINDOW_START);
    send(w, 1, 1000);
    expect(w.canSend()).toBe(false);
    expect(codeOf(() => w.onDataSent(digestOf(1001)))).toBe('SENDME_WINDOW_EXHAUSTED');
  });

  it('needs the digest of every 100th cell only', () => {
    const w = new PackageWindow('circuit');
    const needs: number[] = [];
    for (let i = 1; i <= 300; i++) { if (w.nextNeedsDigest()) needs.push(i); w.onDataSent(digestOf(i)); }
    expect(needs).toEqual([100, 200, 300]);
  });

  it('refuses to record a boundary cell without its digest (SENDME_DIGEST_MISSING)', () => {
    const w = new PackageWindow('circuit');
    for (let i = 1; i < 100; i++) w.onDataSent();
    expect(codeOf(() => w.onDataSent())).toBe('SENDME_DIGEST_MISSING');
  });

  it('a SENDME carrying the digest of the 100th cell reopens the window by 100', () => {
    const w = new PackageWindow('circuit');
    send(w, 1, 1000);
    w.onSendme(digestOf(100));
    expect(w.window).toBe(100);
    expect(w.canSend()).toBe(true);
  });

  it('SENDMEs acknowledge boundary cells in order', () => {
    const w = new PackageWindow('circuit');
    send(w, 1, 250);
    expect(codeOf(() => w.onSendme(digestOf(200)))).toBe('SENDME_BAD_DIGEST');
    const w2 = new PackageWindow('circuit');
    send(w2, 1, 250);
    w2.onSendme(digestOf(100));
    w2.onSendme(digestOf(200));
    expect(w2.window).toBe(1000 - 250 + 200);
  });

  it('an early SENDME (before 100 cells) is SENDME_UNEXPECTED', () => {
    const w = new PackageWindow('circuit');
    send(w, 1, 99);
    expect(codeOf(() => w.onSendme(digestOf(99)))).toBe('SENDME_UNEXPECTED');
    expect(codeOf(() => new PackageWindow('circuit').onSendme(null))).toBe('SENDME_UNEXPECTED');
  });

  it('an extra SENDME (window would pass 1000) is SENDME_UNEXPECTED', () => {
    const w = new PackageWindow('circuit');
    send(w, 1, 100);
    w.onSendme(digestOf(100));
    expect(w.window).toBe(1000);
    expect(codeOf(() => w.onSendme(digestOf(100)))).toBe('SENDME_UNEXPECTED');
  });

  it('an unauthenticated SENDME (no digest) is SENDME_BAD_DIGEST', () => {
    const w = new PackageWindow('circuit');
    send(w, 1, 100);
    expect(codeOf(() => w.onSendme(null))).toBe('SENDME_BAD_DIGEST');
    expect(codeOf(() => w.onSendme(Buffer.alloc(4)))).toBe('SENDME_BAD_DIGEST');
  });

  it('a wrong digest is SENDME_BAD_DIGEST', () => {
    const w = new PackageWindow('circuit');
    send(w, 1, 100);
    expect(codeOf(() => w.onSendme(digestOf(99)))).toBe('SENDME_BAD_DIGEST');
  });

  it('copies the digest (the caller may reuse its buffer)', () => {
    const w = new PackageWindow('circuit');
    const scratch = Buffer.alloc(20);
    for (let i = 1; i <= 100; i++) { digestOf(i).copy(scratch); w.onDataSent(scratch); }
    scratch.fill(0);
    w.onSendme(digestOf(100));
  });
});

describe('circuit deliver window (SPEC §7.4.2)', () => {
  it('a SENDME is due after every 100 DATA cells and carries the 100th cell\'s digest', () => {
    const w = new DeliverWindow('circuit');
    recv(w, 1, 99);
    expect(w.sendmeDue()).toBe(false);
    recv(w, 100, 1);
    expect(w.sendmeDue()).toBe(true);
    expect(w.takeSendme()).toEqual(digestOf(100));
    expect(w.window).toBe(1000);
    expect(w.sendmeDue()).toBe(false);
  });

  it('a 1001st cell without a SENDME sent is SENDME_WINDOW_EXCEEDED', () => {
    const w = new DeliverWindow('circuit');
    recv(w, 1, 1000);
    expect(w.window).toBe(0);
    expect(codeOf(() => w.onDataReceived(digestOf(1001)))).toBe('SENDME_WINDOW_EXCEEDED');
  });

  it('delayed SENDMEs are taken oldest first', () => {
    const w = new DeliverWindow('circuit');
    recv(w, 1, 300);
    expect(w.takeSendme()).toEqual(digestOf(100));
    expect(w.takeSendme()).toEqual(digestOf(200));
    expect(w.takeSendme()).toEqual(digestOf(300));
    expect(codeOf(() => w.takeSendme())).toBe('SENDME_NOT_DUE');
  });

  it('refuses a boundary cell without a digest', () => {
    const w = new DeliverWindow('circuit');
    for (let i = 1; i < 100; i++) w.onDataReceived();
    expect(codeOf(() => w.onDataReceived())).toBe('SENDME_DIGEST_MISSING');
  });
});

describe('stream windows (SPEC §7.4.3)', () => {
  it('start at 500 with SENDME every 50, unauthenticated by default', () => {
    const p = new PackageWindow('stream');
    const d = new DeliverWindow('stream');
    expect(p.window).toBe(STREAM_WINDOW_START);
    for (let i = 0; i < 500; i++) { expect(p.nextNeedsDigest()).toBe(false); p.onDataSent(); d.onDataReceived(); }
    expect(p.canSend()).toBe(false);
    expect(codeOf(() => d.onDataReceived())).toBe('SENDME_WINDOW_EXCEEDED');
    expect(d.takeSendme()).toBeNull();
    p.onSendme(null);
    expect(p.window).toBe(50);
  });
  it('an early stream SENDME is SENDME_UNEXPECTED', () => {
    const p = new PackageWindow('stream');
    for (let i = 0; i < 49; i++) p.onDataSent();
    expect(codeOf(() => p.onSendme(null))).toBe('SENDME_UNEXPECTED');
  });
  it('can be authenticated by option', () => {
    const p = new PackageWindow('stream', { authenticated: true });
    send(p, 1, 50);
    expect(codeOf(() => p.onSendme(null))).toBe('SENDME_BAD_DIGEST');
    p.onSendme(digestOf(50));
  });
});

describe('property: a well-behaved pair never errors and never stalls', () => {
  it('random send/deliver interleavings', () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: 1, max: 400 }), { minLength: 1, maxLength: 40 }), fc.constantFrom('circuit', 'stream'), (bursts, kind) => {
      const p = new PackageWindow(kind as 'circuit' | 'stream');
      const d = new DeliverWindow(kind as 'circuit' | 'stream');
      let n = 0;
      for (const b of bursts) {
        for (let i = 0; i < b && p.canSend(); i++) {
          n++;
          const dig = p.nextNeedsDigest() || d.nextNeedsDigest() ? digestOf(n) : undefined;
          p.onDataSent(dig);
          d.onDataReceived(dig);
        }
        while (d.sendmeDue()) p.onSendme(d.takeSendme());
        expect(p.canSend()).toBe(true);
        expect(p.window).toBe(d.window);
      }
    }));
  });
});
