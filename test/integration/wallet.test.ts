// SPEC.md §8.11 end to end with real processes on 127.0.0.1: relays earn cloudcoins by carrying
// traffic; a relay operator sends part of a relay's earnings to a wallet with
// `bitcloud wallet send --key <relay identity.key>`; the authorities carry the transfer into the
// reward chain; balances are exact (allocations ± transfers) for every verifier; a double spend,
// a replay, an overspend, a forged signature, a nonce gap and a malformed body are refused by a
// real authority (HTTP 400 with the code), and the wallet spends what it received.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ed25519Generate, randomBytes } from '../../src/crypto/primitives';
import { IDENTITY_KEY_FILE, loadEd25519Secret } from '../../src/crypto/keys';
import { parseAuthorityList, type AuthorityInfo } from '../../src/dir/authorities';
import { httpRequest, PATHS } from '../../src/dir/fetch';
import { fetchRewardChain, type RewardChainResult } from '../../src/client/rewards';
import { signTransfer, signUnboundTransfer } from '../../src/bandwidth/transfer';
import { encodeTransfer } from '../../src/wire/transfer';
import { eventually, runCli } from '../helpers/daemon';
import { curl, startContentServer, startLocalNet, viaSocks, type ContentServer, type LocalNet } from '../helpers/localnet';

const PERIOD = 5;
let net: LocalNet;
let authorities: AuthorityInfo[];
let content: ContentServer;
const walletDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-wallet-'));

const chain = (): Promise<RewardChainResult> => fetchRewardChain({ authorities, periodSeconds: PERIOD, timeoutMs: 5000 });
const post = (a: AuthorityInfo, body: Buffer) => httpRequest(a.url + PATHS.transfers, { method: 'POST', body, maxBytes: 1 << 16, timeoutMs: 10_000 });
const codeOf = (r: { body: Buffer }) => (JSON.parse(r.body.toString('utf8')) as { code: string }).code;
const wallet = (args: string[]) => runCli('bitcloud', ['wallet', ...args, '--config', net.clientConfig, '--data-dir', walletDir], { timeoutMs: 120_000 });
/** Every allocation a key received in the chain. */
const earned = (c: RewardChainResult, key: string) => c.blocks.reduce((s, b) => s + (b.block.allocations.get(key) ?? 0n), 0n);

beforeAll(async () => {
  net = await startLocalNet({ relays: 5, exits: 2, period: PERIOD });
  authorities = parseAuthorityList(JSON.parse(fs.readFileSync(net.clientConfig, 'utf8')).authorities);
  content = await startContentServer(randomBytes(1 << 20));
}, 200_000);

afterAll(async () => {
  await content?.close();
  await net?.stop();
  fs.rmSync(walletDir, { recursive: true, force: true });
}, 60_000);

describe('cloudcoin transfers in the reward chain (SPEC.md §8.11)', () => {
  let relayKeyFile = '';
  let relayFp = '';
  let walletAddr = '';

  it('a relay earns; its operator sends 0.5 coins to a new wallet; every balance is exact', async () => {
    const r = await curl([...viaSocks(net.socksPort), '-sS', '-o', '/dev/null', '-w', '%{size_download}', `http://127.0.0.1:${content.port}/bytes/0/${4 << 20}`], { timeoutMs: 120_000 });
    expect(r.code, r.stderr + r.stdout).toBe(0);
    // Wait for a relay holding more than one coin.
    const rich = await eventually(async () => {
      const c = await chain().catch(() => null);
      const n = c && net.relays.find((x) => (c.state.balances.get(x.identity!) ?? 0n) > 100_000_000n);
      return n ?? null;
    }, 200_000, 1000);
    relayFp = rich.identity!;
    relayKeyFile = path.join(rich.dataDir, IDENTITY_KEY_FILE);

    const addr = await wallet(['address', '--json']);
    expect(addr.code, addr.stderr + addr.stdout).toBe(0);
    walletAddr = (JSON.parse(addr.stdout) as { address: string }).address;
    expect(walletAddr).toMatch(/^[0-9a-f]{64}$/);
    expect(fs.statSync(path.join(walletDir, 'wallet.key')).mode & 0o777).toBe(0o600);
    // The same address again: the key is kept.
    expect((await wallet(['address'])).stdout.trim()).toBe(walletAddr);

    const sent = await wallet(['send', walletAddr, '0.5', '--key', relayKeyFile, '--json']);
    expect(sent.code, sent.stderr + sent.stdout).toBe(0);
    const s = JSON.parse(sent.stdout) as { ok: boolean; nonce: number; units: string; included: { height: number } };
    expect(s).toMatchObject({ ok: true, nonce: 1, units: '50000000' });
    expect(s.included.height).toBeGreaterThanOrEqual(0);

    // Every verifier reads the same exact balances: allocations ± transfers.
    const c = await chain();
    expect(c.state.balances.get(walletAddr)).toBe(50_000_000n);
    expect(c.state.balances.get(relayFp)).toBe(earned(c, relayFp) - 50_000_000n);
    expect(c.state.nonces.get(relayFp)).toBe(1);
    const sum = [...c.state.balances.values()].reduce((a, b) => a + b, 0n);
    expect(sum).toBe(c.state.totalMinted);
    const carrying = c.blocks.find((b) => b.block.height === s.included.height)!;
    expect(carrying.block.transfers).toHaveLength(1);

    const bal = await wallet(['balance', '--json']);
    expect(bal.code, bal.stderr + bal.stdout).toBe(0);
    expect(JSON.parse(bal.stdout)).toMatchObject({ ok: true, address: walletAddr, balance: { units: '50000000', coins: '0.50000000' } });
  }, 400_000);

  it('a double spend, a replay, an overspend, a forged signature, a nonce gap and a malformed body are refused with their codes', async () => {
    const relayKey = await loadEd25519Secret(relayKeyFile);
    const other = ed25519Generate();
    const a = authorities[0];
    // Nonce 1 is in the chain: the same transfer again (a replay) and another one with nonce 1 (a double spend).
    const c = await chain();
    const id = c.state.chainId!; // SPEC §8.11.1: transfers are signed for this chain
    const t1 = c.blocks.flatMap((b) => b.block.transfers ?? []).find((t) => t.from.toString('hex') === relayFp)!;
    const replay = await post(a, encodeTransfer(t1));
    expect([replay.status, codeOf(replay)]).toEqual([400, 'TRANSFER_REPLAYED']);
    const double = await post(a, encodeTransfer(signTransfer(relayKey, other.publicKey, 1n, 1, id)));
    expect([double.status, codeOf(double)]).toEqual([400, 'TRANSFER_REPLAYED']);
    // Nonce 2 pending at the authority; a second nonce-2 spend elsewhere is the double spend the pool refuses.
    const first2 = await post(a, encodeTransfer(signTransfer(relayKey, other.publicKey, 1n, 2, id)));
    expect(first2.status).toBe(200);
    // Passed on to the other authorities (asynchronously): wait until the second one holds it.
    await eventually(async () => {
      const r = await httpRequest(`${authorities[1].url}${PATHS.transfersPending}?from=${relayFp}`, { maxBytes: 1 << 16, timeoutMs: 5000 });
      return r.status === 200 && r.body.length === 145;
    }, 30_000, 100);
    const again2 = await post(authorities[1], encodeTransfer(signTransfer(relayKey, ed25519Generate().publicKey, 1n, 2, id)));
    expect([again2.status, codeOf(again2)]).toEqual([400, 'TRANSFER_REPLAYED']);
    const over = await post(a, encodeTransfer(signTransfer(relayKey, other.publicKey, 10n ** 15n, 3, id)));
    expect([over.status, codeOf(over)]).toEqual([400, 'TRANSFER_OVERSPEND']);
    const forged = { ...signTransfer(other, ed25519Generate().publicKey, 1n, 3, id), from: relayKey.publicKey };
    const bad = await post(a, encodeTransfer(forged));
    expect([bad.status, codeOf(bad)]).toEqual([400, 'TRANSFER_BAD_SIGNATURE']);
    const gap = await post(a, encodeTransfer(signTransfer(relayKey, other.publicKey, 1n, 9, id)));
    expect([gap.status, codeOf(gap)]).toEqual([400, 'TRANSFER_NONCE_GAP']);
    const short = await post(a, encodeTransfer(t1).subarray(1));
    expect([short.status, codeOf(short)]).toEqual([400, 'TRANSFER_MALFORMED']);
    // A version 1 transfer names no chain (SPEC §8.11.3): refused, whatever else holds of it.
    const unbound = await post(a, encodeTransfer(signUnboundTransfer(relayKey, other.publicKey, 1n, 3)));
    expect([unbound.status, codeOf(unbound)]).toEqual([400, 'TRANSFER_MALFORMED']);

    // The wallet refuses to send more than it holds, before asking anyone.
    const tooMuch = await wallet(['send', other.publicKey.toString('hex'), '0.50000001', '--json']);
    expect(tooMuch.code).toBe(1);
    expect(JSON.parse(tooMuch.stdout)).toMatchObject({ ok: false, error: { code: 'TRANSFER_OVERSPEND' } });
  }, 120_000);

  it('the wallet spends what it received; history and verify agree with the chain', async () => {
    const other = ed25519Generate().publicKey.toString('hex');
    const sent = await wallet(['send', other, '0.2', '--json']);
    expect(sent.code, sent.stderr + sent.stdout).toBe(0);
    expect(JSON.parse(sent.stdout)).toMatchObject({ ok: true, nonce: 1, units: '20000000', balance: { units: '30000000' } });
    const c = await chain();
    expect(c.state.balances.get(other)).toBe(20_000_000n);
    expect(c.state.balances.get(walletAddr)).toBe(30_000_000n);

    const h = await wallet(['history', '--json']);
    expect(h.code, h.stderr + h.stdout).toBe(0);
    const hist = JSON.parse(h.stdout) as { history: { kind: string; units: string; counterparty: string }[] };
    expect(hist.history.map((x) => [x.kind, x.units, x.counterparty])).toEqual([['received', '50000000', relayFp], ['sent', '-20000000', other]]);
    const v = await wallet(['verify']);
    expect(v.code, v.stderr + v.stdout).toBe(0);
    expect(v.stdout).toMatch(/reward chain verified: \d+ blocks/);
    expect(v.stdout).toContain('0.30000000 coins');
  }, 200_000);
});
