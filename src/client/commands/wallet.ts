// `bitcloud wallet address | balance | send TO AMOUNT | history [--json] | verify` (SPEC.md §8.11.4).
// The wallet key is <dataDir>/wallet.key (made on first use, mode 0600, written atomically), or
// the key file given with --key (e.g. a relay's identity.key: its operator spends its earnings).
// Every balance is read from the reward chain after verifying it whole (SPEC §8.7.3), through the
// guards' mirrors when the client has them; transfers go to the authorities directly.
import type { CommandModule } from 'yargs';
import { CONFIG_OPTION, DATA_DIR_OPTION, JSON_OPTION } from './options';
import { err, errorCode, isBitcloudError, isErrorCode } from '../../errors';
import { exitStatusOf } from '../exit-status';
import { clientConfigPath, loadDirClientConfig } from '../../dir/client-config';
import { signFundingTransfer, signTransfer } from '../../bandwidth/transfer';
import type { Transfer } from '../../wire/transfer';
import { formatCoins, type RewardChainResult, type VerifiedRewardBlock } from '../rewards';
import { findTransfer, loadWalletKey, parseCoins, parseKey, pendingFrom, submitEscrowCancel, submitTransfer, walletHistory } from '../wallet';
import { signEscrowCancel } from '../../wire/escrow-cancel';
import { withVerifiedChain } from './rewards';
import type { Output } from './consensus';
import { lineAtEnd, type GuardSet } from '../guards';
import type { VerifiedConsensus } from '../../dir/types';
import { withFileLock } from '../../ops/file-lock';

export interface WalletOptions {
  config?: string;
  dataDir?: string;
  json?: boolean;
  /** A key file to use instead of <dataDir>/wallet.key. */
  key?: string;
  from?: string[];
  /** send: do not wait for the transfer to be in a block. */
  noWait?: boolean;
  /** send: give up waiting after this many seconds (default: 12 consensus periods). */
  waitSeconds?: number;
  /**
   * send: called with the verified chain and this key's pending transfers before the transfer is
   * signed; a BitcloudError it throws stops the send with nothing sent (SPEC.md §9.20.4: a contract
   * whose escrow is funded already, `ESCROW_ALREADY_FUNDED`).
   */
  checkBefore?: (chain: RewardChainResult, pending: readonly Transfer[]) => void;
  /**
   * send: run once the authorities took the transfer, before the wait (also with noWait). SPEC.md
   * §9.20.4: `keep contract --pay` uploads its contract again here, now that the pending funding
   * protects it from eviction, and learns the version of the transfer the authorities took. It
   * must not throw: the transfer is sent already.
   */
  afterSubmit?: (sent: Transfer) => Promise<void>;
  /**
   * send: called with the verified chain, the block that carries the transfer and the sender's key
   * (hex) before success is reported; a BitcloudError it throws fails the send (SPEC.md §9.20.4:
   * `ESCROW_NOT_OPENED`).
   */
  checkIncluded?: (chain: RewardChainResult, block: VerifiedRewardBlock, from: string) => void;
  /**
   * The guard set of the command that runs this one inside it (`keep contract --pay`, `put --pay`):
   * the chain is fetched through it and it is not saved here; that command saves it at its end and
   * prints the one "guard state not saved" line there when the save was skipped (SPEC.md §7.2 State).
   */
  guards?: GuardSet;
  /**
   * send: TO is a storage contract id and the transfer funds its escrow: a funding transfer
   * (version 4, SPEC.md §8.11.1), which a block carries only together with the escrow's open
   * (§8.7.3 item 7, §9.20.4), never as a plain transfer to the id. A function decides it from the
   * consensus this send verified its chain with, the one current when the transfer is signed
   * (SPEC.md §9.20.4: a funding transfer only when that consensus has `funding-v2 = 1`, §8.11.3).
   */
  funding?: boolean | ((consensus: VerifiedConsensus) => boolean);
}

const stdio: Output = { out: (s) => process.stdout.write(s + '\n'), err: (s) => process.stderr.write(s + '\n') };
const amount = (u: bigint) => ({ units: u.toString(), coins: formatCoins(u) });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * SPEC.md §8.11.4: how long a send waits for another send of the same key to finish reading its
 * pending transfers and submitting (each step bounded by its 10 s timeouts), then IO_STATE_LOCKED.
 */
export const WALLET_LOCK_TIMEOUT_MS = 60_000;

/** `what`: the command as the user typed it after `bitcloud` (`wallet send`, `keep cancel`). */
function fail(what: string, e: unknown, o: WalletOptions, io: Output): number {
  const code = errorCode(e);
  const detail = (e as { detail?: unknown }).detail;
  // SPEC.md §9.10: the failure document of every command, plus the error's detail.
  const message = (e as Error).message.replace(/^[A-Z0-9_]+: /, '');
  if (o.json) io.out(JSON.stringify({ ok: false, error: { code, message }, ...(detail && typeof detail === 'object' ? { detail } : {}) }));
  io.err(`bitcloud ${what}: ${(e as Error).message}`);
  return exitStatusOf(code);
}

/** --wait-seconds, checked before anything is sent: a finite number of seconds ≥ 0 (CONFIG_INVALID). */
function checkWaitSeconds(o: WalletOptions): void {
  if (o.waitSeconds !== undefined && !(Number.isFinite(o.waitSeconds) && o.waitSeconds >= 0)) {
    throw err('CONFIG_INVALID', `--wait-seconds must be a number of seconds ≥ 0, not ${String(o.waitSeconds)}`, { key: 'wait-seconds' });
  }
}

/**
 * SPEC.md §8.11.4: once the authorities took it, the chain is fetched again every min(5 s, P/4)
 * until a block carries it or the wait ends. A fetch that fails meanwhile is reported and the wait
 * goes on (null): the transfer was accepted, and failing here would invite a second one.
 */
async function refetchWhileWaiting(refetch: () => Promise<RewardChainResult>, what: string, io: Output): Promise<RewardChainResult | null> {
  try {
    return await refetch();
  } catch (e) {
    if (!isBitcloudError(e)) throw e;
    io.err(`bitcloud ${what}: fetching the chain failed (${e.message}); still waiting`);
    return null;
  }
}

/** Balance and last nonce of `key` in a verified chain. */
function accountOf(chain: RewardChainResult, key: string): { balance: bigint; nonce: number } {
  return { balance: chain.state.balances.get(key) ?? 0n, nonce: chain.state.nonces.get(key) ?? 0 };
}

export async function walletCommand(sub: 'address' | 'balance' | 'history' | 'verify', o: WalletOptions, io: Output = stdio, now: () => number = Date.now): Promise<number> {
  // SPEC.md §7.2 (State): the "guard state not saved" line comes at the end, after the result or the failure.
  const guardLine = lineAtEnd((w) => io.err(`bitcloud wallet: ${w}`));
  try {
    const cfg = loadDirClientConfig(clientConfigPath(o.config), { dataDir: o.dataDir });
    const { key, file, created } = await loadWalletKey(cfg.dataDir, o.key);
    const hex = key.publicKey.toString('hex');
    if (sub === 'address') {
      if (o.json) io.out(JSON.stringify({ ok: true, address: hex, keyFile: file, created }));
      else io.out(hex);
      if (created) io.err(`bitcloud wallet: made a new wallet key in ${file}`);
      return 0;
    }
    return await withVerifiedChain({ ...o, warn: guardLine.warn }, now, async ({ chain }) => {
      const acct = accountOf(chain, hex);
      const pending = await pendingFrom(cfg.authorities, hex, acct.nonce, chain.state.chainId);
      const history = walletHistory(chain.blocks, hex);
      if (o.json) {
        io.out(JSON.stringify({
          ok: true, address: hex, source: chain.source, height: chain.state.height, balance: amount(acct.balance), nonce: acct.nonce,
          ...(sub === 'verify' ? { blocks: chain.state.height + 1, transfers: chain.state.transfers, totalMinted: amount(chain.state.totalMinted) } : {}),
          ...(sub === 'history' ? {
            history: history.map((h) => ({ ...h, ...amount(h.units) })),
            pending: pending.map((t) => ({ to: t.to.toString('hex'), nonce: t.nonce, ...amount(-t.amount) })),
          } : {}),
        }));
        return 0;
      }
      if (sub === 'verify') {
        io.out(`reward chain verified: ${chain.state.height + 1} blocks (height ${chain.state.height}), ${chain.state.transfers} transfers, ${formatCoins(chain.state.totalMinted)} coins minted; from ${chain.source}`);
      }
      io.out(`${hex}: ${formatCoins(acct.balance)} coins (${acct.balance} units) at height ${chain.state.height}`);
      if (pending.length) io.out(`pending: ${pending.length} transfer(s) sent, not yet in a block (${formatCoins(pending.reduce((a, t) => a + t.amount, 0n))} coins)`);
      if (sub === 'history') {
        if (!history.length && !pending.length) io.out('no rewards or transfers yet');
        for (const h of history) {
          const what = h.kind === 'reward' ? 'reward' : h.kind === 'sent' ? `sent to ${h.counterparty} (nonce ${h.nonce})`
            : h.kind === 'escrow_pay' ? `paid by contract ${h.counterparty}` : h.kind === 'escrow_back' ? `back from contract ${h.counterparty}` : `received from ${h.counterparty}`;
          io.out(`height ${h.height}  epoch ${h.epoch}  ${h.units > 0n ? '+' : ''}${formatCoins(h.units)}  ${what}`);
        }
        for (const t of pending) io.out(`pending  -${formatCoins(t.amount)}  sent to ${t.to.toString('hex')} (nonce ${t.nonce})`);
      }
      for (const f of chain.failures) io.err(`bitcloud wallet: refused the chain from ${f.source}: ${f.reason}`);
      return 0;
    });
  } catch (e) {
    return fail(`wallet ${sub}`, e, o, io);
  } finally {
    guardLine.flush();
  }
}

/**
 * `send TO AMOUNT`: the next nonce after the chain's and the authorities' pending ones; checked
 * against the balance here first (TRANSFER_OVERSPEND); submitted to every authority; then the
 * chain is fetched again until a block carries the transfer (unless --no-wait).
 */
export async function walletSend(to: string, coins: string, o: WalletOptions, io: Output = stdio, now: () => number = Date.now): Promise<number> {
  // SPEC.md §7.2 (State): the "guard state not saved" line comes at the end, after the result or the failure.
  const guardLine = lineAtEnd((w) => io.err(`bitcloud wallet: ${w}`));
  try {
    const toKey = parseKey(to);
    const units = parseCoins(coins);
    checkWaitSeconds(o);
    const cfg = loadDirClientConfig(clientConfigPath(o.config), { dataDir: o.dataDir });
    const { key, file } = await loadWalletKey(cfg.dataDir, o.key);
    const hex = key.publicKey.toString('hex');
    // SPEC §8.11.4: bad arguments (exit 2); a transfer to its own sender could never be valid (§8.11.1).
    if (toKey.equals(key.publicKey)) throw err('CONFIG_INVALID', 'TO is this wallet\'s own address: a transfer cannot go to its own sender', { key: 'to' });
    return await withVerifiedChain({ ...o, warn: guardLine.warn }, now, async ({ chain: before, consensus, refetch }) => {
      // SPEC §8.11.4 (Sending): the pending read, the nonce, the signature and the submission run
      // holding `<key file>.lock`, so a second send of this key (another `wallet send`, a `keep
      // contract --pay`) reads this one's transfer as pending and signs the next nonce, instead of
      // signing other contents under the same nonce. IO_STATE_LOCKED after WALLET_LOCK_TIMEOUT_MS.
      const { t, nonce, sent } = await withFileLock(`${file}.lock`, async (waited) => {
        // A send that waited for the lock reads the chain again: a block that landed meanwhile took
        // this key's pending transfers out of the pools, and the nonce counted from the chain read
        // before the wait would be one a block had used (TRANSFER_REPLAYED, signed twice).
        const chain = waited ? await refetch() : before;
        const acct = accountOf(chain, hex);
        const pending = await pendingFrom(cfg.authorities, hex, acct.nonce, chain.state.chainId);
        const nonce = acct.nonce + 1 + pending.length;
        const available = acct.balance - pending.reduce((a, x) => a + x.amount, 0n);
        o.checkBefore?.(chain, pending);
        if (units > available) throw err('TRANSFER_OVERSPEND', `${hex.slice(0, 16)}… holds ${formatCoins(available)} coins${pending.length ? ' after its pending transfers' : ''}, not ${formatCoins(units)}`);
        const asFunding = typeof o.funding === 'function' ? o.funding(consensus) : o.funding === true;
        // SPEC §8.11.1: signed for this chain only, over its id (the hash of the block 0 just verified).
        const chainId = chain.state.chainId;
        if (!chainId) throw err('REWARD_NOT_AVAILABLE', 'the chain has no block 0: there is no chain id to sign the transfer for');
        const t = asFunding ? signFundingTransfer(key, toKey, units, nonce, chainId) : signTransfer(key, toKey, units, nonce, chainId);
        const sent = await submitTransfer(cfg.authorities, t);
        if (!sent.accepted.length) {
          const first = sent.refused[0];
          if (first) throw err(isErrorCode(first.code) ? first.code : 'DIR_FETCH_FAILED', `refused: ${first.reason}`, { refused: sent.refused });
          throw err('DIR_FETCH_FAILED', `no authority could be reached (${sent.unreachable.map((u) => `${u.authority}: ${u.reason}`).join('; ')})`);
        }
        return { t, nonce, sent };
      }, { code: 'IO_STATE_LOCKED', timeoutMs: WALLET_LOCK_TIMEOUT_MS });
      for (const r of sent.refused) io.err(`bitcloud wallet send: ${r.authority} refused: ${r.reason}`);
      if (!o.json) io.out(`sent ${formatCoins(units)} coins to ${toKey.toString('hex')} (nonce ${nonce}); taken by ${sent.accepted.length} of ${cfg.authorities.length} authorities`);
      const result = { ok: true, from: hex, to: toKey.toString('hex'), nonce, ...amount(units), accepted: sent.accepted, refused: sent.refused };
      await o.afterSubmit?.(t);
      if (o.noWait) {
        if (o.json) io.out(JSON.stringify({ ...result, included: null }));
        return 0;
      }
      const P = consensus.periodSeconds * 1000;
      const deadline = now() + (o.waitSeconds ?? 12 * consensus.periodSeconds) * 1000;
      // SPEC §8.11.4: pools are memory only (§8.11.3); while waiting, the same signed bytes are
      // submitted again once per period, so a transfer lost by restarts of every authority that
      // held it is taken again (an authority that holds it answers `held`). Never re-signed.
      let resendAt = now() + P;
      for (;;) {
        const c = await refetchWhileWaiting(refetch, 'wallet send', io);
        const b = c && findTransfer(c.blocks, t);
        if (b) {
          o.checkIncluded?.(c, b, hex);
          const bal = accountOf(c, hex).balance;
          if (o.json) io.out(JSON.stringify({ ...result, included: { height: b.block.height, epoch: b.block.epoch }, balance: amount(bal) }));
          else io.out(`included in block ${b.block.height} (epoch ${b.block.epoch}); balance now ${formatCoins(bal)} coins`);
          return 0;
        }
        if (c && accountOf(c, hex).nonce >= nonce) throw err('TRANSFER_REPLAYED', `another transfer with nonce ${nonce} from this key is in the chain instead (sent from elsewhere at the same time?)`);
        if (now() >= deadline) throw err('TRANSFER_NOT_INCLUDED', `no block carried the transfer within ${Math.round((o.waitSeconds ?? 12 * consensus.periodSeconds))} s; it is still pending at the authorities that took it (see \`bitcloud wallet history\`)`);
        if (now() >= resendAt) {
          resendAt = now() + P;
          await submitTransfer(cfg.authorities, t); // answers not needed: the chain says whether it lands
        }
        await sleep(Math.max(500, Math.min(P / 4, 5000)));
      }
    });
  } catch (e) {
    return fail('wallet send', e, o, io);
  } finally {
    guardLine.flush();
  }
}

/**
 * SPEC.md §9.20.4: cancel a paid contract (the file is deleted or no longer wanted). Checks the
 * verified chain first (ESCROW_UNKNOWN, ESCROW_CLOSED, ESCROW_NOT_PAYER: the key is not the
 * payer's), signs the cancel with the payer's key, submits it to every authority, then, unless
 * --no-wait, fetches the chain until a block returned the rest (ESCROW_CANCEL_NOT_INCLUDED after the wait).
 */
export async function walletCancel(contract: string, o: WalletOptions, io: Output = stdio, now: () => number = Date.now): Promise<number> {
  // SPEC.md §7.2 (State): the "guard state not saved" line comes at the end, after the result or the failure.
  const guardLine = lineAtEnd((w) => io.err(`bitcloud wallet: ${w}`));
  try {
    const id = parseKey(contract).toString('hex');
    checkWaitSeconds(o);
    const cfg = loadDirClientConfig(clientConfigPath(o.config), { dataDir: o.dataDir });
    const { key } = await loadWalletKey(cfg.dataDir, o.key);
    const hex = key.publicKey.toString('hex');
    return await withVerifiedChain({ ...o, warn: guardLine.warn }, now, async ({ chain, consensus, refetch }) => {
      const e = chain.state.escrows.get(id);
      if (!e) throw err('ESCROW_UNKNOWN', `no escrow is open for contract ${id.slice(0, 16)}… in the chain (height ${chain.state.height})`);
      if (e.refunded !== null) throw err('ESCROW_CLOSED', `contract ${id.slice(0, 16)}… was ${e.cancelledAt !== undefined ? 'cancelled' : 'refunded'} already (${formatCoins(e.refunded)} coins back to the payer)`);
      if (e.payer !== hex) throw err('ESCROW_NOT_PAYER', `contract ${id.slice(0, 16)}… was paid by ${e.payer.slice(0, 16)}…, not by this key ${hex.slice(0, 16)}…`);
      const sent = await submitEscrowCancel(cfg.authorities, signEscrowCancel(key, id));
      if (!sent.accepted.length) {
        const first = sent.refused[0];
        if (first) throw err(isErrorCode(first.code) ? first.code : 'DIR_FETCH_FAILED', `refused: ${first.reason}`, { refused: sent.refused });
        throw err('DIR_FETCH_FAILED', `no authority could be reached (${sent.unreachable.map((u) => `${u.authority}: ${u.reason}`).join('; ')})`);
      }
      for (const r of sent.refused) io.err(`bitcloud keep cancel: ${r.authority} refused: ${r.reason}`);
      const result = { ok: true, contract: id, payer: hex, accepted: sent.accepted, refused: sent.refused };
      if (o.noWait) {
        if (o.json) io.out(JSON.stringify({ ...result, included: null }));
        else io.out(`cancel of ${id.slice(0, 16)}… taken by ${sent.accepted.length} of ${cfg.authorities.length} authorities`);
        return 0;
      }
      const P = consensus.periodSeconds * 1000;
      const wait = o.waitSeconds ?? 12 * consensus.periodSeconds;
      const deadline = now() + wait * 1000;
      for (;;) {
        const c = await refetchWhileWaiting(refetch, 'keep cancel', io);
        const x = c?.state.escrows.get(id);
        if (c && x && x.refunded !== null) {
          const b = c.blocks.find((vb) => (vb.block.escrow ?? []).some((op) => op.contract === id && (op.kind === 'cancel' || op.kind === 'refund')))!;
          const how = x.cancelledAt !== undefined ? 'cancelled' : 'ended';
          if (o.json) {
            io.out(JSON.stringify({ ...result, how, refunded: amount(x.refunded), paid: amount(x.paid), included: { height: b.block.height, epoch: b.block.epoch }, balance: amount(c.state.balances.get(hex) ?? 0n) }));
          } else {
            io.out(`contract ${id.slice(0, 16)}… ${how} in block ${b.block.height} (epoch ${b.block.epoch}): ${formatCoins(x.refunded)} coins back to ${hex.slice(0, 16)}…, ${formatCoins(x.paid)} paid to storage nodes`);
          }
          return 0;
        }
        if (now() >= deadline) throw err('ESCROW_CANCEL_NOT_INCLUDED', `no block carried the cancel within ${Math.round(wait)} s; the authorities that took it still hold it`);
        await sleep(Math.max(500, Math.min(P / 4, 5000)));
      }
    });
  } catch (e) {
    return fail('keep cancel', e, o, io);
  } finally {
    guardLine.flush();
  }
}

type Args = { config?: string; 'data-dir'?: string; json: boolean; key?: string; from?: string[] };
const common = <T>(y: T): T => (y as unknown as import('yargs').Argv)
  .option('key', { type: 'string', describe: 'Use this key file (e.g. a relay\'s identity.key) instead of <dataDir>/wallet.key' })
  .option('json', JSON_OPTION)
  .option('config', CONFIG_OPTION)
  .option('from', { type: 'string', array: true, describe: 'Fetch the chain from this authority HOST:PORT or URL instead' })
  .option('data-dir', DATA_DIR_OPTION) as unknown as T;
const opts = (a: Args): WalletOptions => ({ config: a.config, dataDir: a['data-dir'], json: a.json, key: a.key, from: a.from });

function sub(name: 'address' | 'balance' | 'history' | 'verify', describe: string): CommandModule {
  return {
    command: name, describe,
    builder: (y) => common(y) as never,
    handler: async (a) => { process.exitCode = await walletCommand(name, opts(a as unknown as Args)); },
  };
}

/** The yargs command, registered in src/bin/bitcloud.ts. */
export const walletCommandModule: CommandModule = {
  command: 'wallet',
  describe: 'Cloudcoin wallet: address, balance, send, history, verify (SPEC.md §8.11).',
  builder: (y) => y
    .command(sub('address', 'Print the wallet\'s key (its address); makes the key on first use'))
    .command(sub('balance', 'Verify the reward chain and print the balance'))
    .command(sub('history', 'Rewards and transfers of this key, in chain order, and pending transfers'))
    .command(sub('verify', 'Verify the whole reward chain (every block, signature and transfer) and print the balance'))
    .command({
      command: 'send <to> <amount>', describe: 'Send AMOUNT coins (up to 8 decimals) to the key TO; waits until a block carries it',
      builder: (yy) => common(yy.positional('to', { type: 'string' }).positional('amount', { type: 'string' })
        .option('wait', { type: 'boolean', default: true, describe: 'Wait until a block carries the transfer (--no-wait: return once submitted)' })
        .option('wait-seconds', { type: 'number', describe: 'Give up waiting after this many seconds (default 12 consensus periods)' })) as never,
      handler: async (a) => {
        const x = a as unknown as Args & { to: string; amount: string; wait: boolean; 'wait-seconds'?: number };
        process.exitCode = await walletSend(String(x.to), String(x.amount), { ...opts(x), noWait: !x.wait, waitSeconds: x['wait-seconds'] });
      },
    })
    .demandCommand(1),
  handler: () => {},
};
