// Byte vectors of the fixed layouts, produced by the implementation before the layouts moved onto
// the shared codec (src/wire/bytes.ts): receipts and RECEIPT_REQUEST (SPEC.md §8.2), reward blocks,
// signed blocks and chain bundles (§8.7), key files (§3.2), the lease journal (§9.8.2). The bytes
// must never change; each vector is encoded and decoded again here.
import { describe, it, expect, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { decodeReceiptBody, decodeReceiptReject, encodeReceiptBody, encodeReceiptReject } from '../../src/wire/receipt';
import { decodeReceiptRequest, encodeReceiptRequest } from '../../src/wire/cell';
import {
  decodeRewardBlock, decodeRewardChainBundle, decodeSignedRewardBlock, encodeRewardBlock, encodeRewardChainBundle, encodeSignedRewardBlock,
} from '../../src/wire/reward-block';
import { loadEd25519Secret, readX25519SecretFile, saveEd25519Secret, saveX25519Secret } from '../../src/crypto/keys';
import { ed25519FromSeed, x25519Public } from '../../src/crypto/primitives';
import { LeaseJournal } from '../../storage/lease-journal';

const V: Record<string, string> = {
  body: [
    '000000123456789a01010101010101010101010101010101010101010101010101010101010101010202020202020202',
    '020202020202020202020202020202020202020202020202001fffffffffffff00000001000000010000000000000007',
  ].join(''),
  rej: [
    '0000000000000063000001000000000304000000000000000100000001000000000000000000000bb8',
  ].join(''),
  req: [
    '000020000000001101',
  ].join(''),
  blk: [
    '010004000000000001090909090909090909090909090909090909090909090909090909090909090900000000000000',
    '4d8000000000000005000000021111111111111111111111111111111111111111111111111111111111111111800000',
    '000000000022222222222222222222222222222222222222222222222222222222222222220000000000000005',
  ].join(''),
  signed: [
    '0000008d0100040000000000010909090909090909090909090909090909090909090909090909090909090909000000',
    '000000004d80000000000000050000000211111111111111111111111111111111111111111111111111111111111111',
    '118000000000000000222222222222222222222222222222222222222222222222222222222222222200000000000000',
    '050203030303030303030303030303030303030303030303030303030303030303030404040404040404040404040404',
    '040404040404040404040404040404040404050505050505050505050505050505050505050505050505050505050505',
    '050505050505050505050505050505050505050505050505050505050505050505050606060606060606060606060606',
    '060606060606060606060606060606060606070707070707070707070707070707070707070707070707070707070707',
    '070708080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808',
    '080808080808080808080808080808080808',
  ].join(''),
  bundle: [
    '424352570100000002000000020000000200000008636572742d6f6e6500000002633200000001000001920000008d01',
    '00040000000000010909090909090909090909090909090909090909090909090909090909090909000000000000004d',
    '800000000000000500000002111111111111111111111111111111111111111111111111111111111111111180000000',
    '000000002222222222222222222222222222222222222222222222222222222222222222000000000000000502030303',
    '030303030303030303030303030303030303030303030303030303030304040404040404040404040404040404040404',
    '040404040404040404040404040505050505050505050505050505050505050505050505050505050505050505050505',
    '050505050505050505050505050505050505050505050505050505050506060606060606060606060606060606060606',
    '060606060606060606060606060707070707070707070707070707070707070707070707070707070707070707080808',
    '080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808',
    '08080808080808080808080808',
  ].join(''),
  x25519: [
    '3d3d20626974636c6f75642d78323535313976312d736563726574203d3d000000000200000030394141414141414141',
    '4141414141414141414141414141414141414141414141417a1a4e709bf085ac494aba0469b9b1eda0ab1f78b16aabb7',
    '9ffeda90623e8522',
  ].join(''),
  ed25519: [
    '3d3d20626974636c6f75642d6564323535313976312d736563726574203d3d0042424242424242424242424242424242',
    '424242424242424242424242424242422152f8d19b791d24453242e15f2eab6cb7cffa7b6a5ed30097960e069881db12',
  ].join(''),
  journal: [
    '42434c4541534531aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa000000006553f100',
    '6e8da871fd2d5fe87124e784d2cba072bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb',
    '00000000000000004c674778c94cf0df2161ec90473b5b31',
  ].join(''),
};
const hex = (b: Buffer) => b.toString('hex');
const id = (n: number) => Buffer.alloc(32, n);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-vectors-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('layout vectors (bytes unchanged)', () => {
  it('receipt body, RECEIPT_REJECT and RECEIPT_REQUEST', () => {
    const body = { epoch: 0x1234_5678_9a, initiator: id(1), responder: id(2), cellsI2R: 2 ** 53 - 1, cellsR2I: 0x1_0000_0001, serial: 7 };
    expect(hex(encodeReceiptBody(body))).toBe(V.body);
    expect(decodeReceiptBody(Buffer.from(V.body, 'hex'))).toEqual(body);
    const rej = { epoch: 99, serial: 2 ** 40 + 3, reason: 'EPOCH_NOT_ACCEPTED' as const, cellsI2R: 1, cellsR2I: 2 ** 32, tolerance: 3000 };
    expect(hex(encodeReceiptReject(rej))).toBe(V.rej);
    expect(decodeReceiptReject(Buffer.from(V.rej, 'hex'))).toEqual(rej);
    const req = { epoch: 2 ** 45 + 17, reason: 'CLOSING' as const };
    expect(hex(encodeReceiptRequest(req))).toBe(V.req);
    expect(decodeReceiptRequest(Buffer.from(V.req, 'hex'))).toEqual(req);
  });

  it('reward block, signed block and chain bundle', () => {
    const allocations = new Map([['11'.repeat(32), 2n ** 63n], ['22'.repeat(32), 5n]]);
    const block = { height: 2 ** 50 + 1, previousHash: id(9), epoch: 77, minted: 2n ** 63n + 5n, allocations };
    const blk = encodeRewardBlock(block);
    expect(hex(blk)).toBe(V.blk);
    expect(decodeRewardBlock(Buffer.from(V.blk, 'hex'))).toEqual(block);
    const sigs = [{ authority: id(3), signingKey: id(4), signature: Buffer.alloc(64, 5) }, { authority: id(6), signingKey: id(7), signature: Buffer.alloc(64, 8) }];
    const signed = encodeSignedRewardBlock(blk, sigs);
    expect(hex(signed)).toBe(V.signed);
    expect(decodeSignedRewardBlock(Buffer.from(V.signed, 'hex')).signatures).toEqual(sigs);
    const bundle = encodeRewardChainBundle(2 ** 33 + 2, [Buffer.from('cert-one'), Buffer.from('c2')], [signed]);
    expect(hex(bundle)).toBe(V.bundle);
    const d = decodeRewardChainBundle(Buffer.from(V.bundle, 'hex'));
    expect(d.chainLength).toBe(2 ** 33 + 2);
    expect(d.certificates.map((c) => c.toString())).toEqual(['cert-one', 'c2']);
    expect(hex(d.blocks[0].body)).toBe(V.blk);
  });

  it('key files', async () => {
    const secretKey = Buffer.alloc(32, 0x41);
    await saveX25519Secret(path.join(dir, 'x'), { secretKey, publicKey: x25519Public(secretKey) }, 2 ** 41 + 12345);
    expect(hex(fs.readFileSync(path.join(dir, 'x')))).toBe(V.x25519);
    expect((await readX25519SecretFile(path.join(dir, 'x'))).createdAt).toBe(2 ** 41 + 12345);
    const ed = ed25519FromSeed(Buffer.alloc(32, 0x42));
    await saveEd25519Secret(path.join(dir, 'e'), ed);
    expect(hex(fs.readFileSync(path.join(dir, 'e')))).toBe(V.ed25519);
    expect((await loadEd25519Secret(path.join(dir, 'e'))).publicKey.equals(ed.publicKey)).toBe(true);
  });

  it('lease journal records', async () => {
    const file = path.join(dir, 'j');
    const { journal } = await LeaseJournal.open(file);
    await journal.append([{ id: Buffer.alloc(32, 0xaa), expiresAt: 1_700_000_000 }, { id: Buffer.alloc(32, 0xbb), expiresAt: 0 }]);
    await journal.close();
    expect(hex(fs.readFileSync(file))).toBe(V.journal);
    const again = await LeaseJournal.open(file);
    await again.journal.close();
    expect([...again.leases]).toEqual([['aa'.repeat(32), 1_700_000_000]]);
    expect(again.repaired).toBe(false);
  });
});
