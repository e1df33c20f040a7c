// Wiring for the storage commands (put, get, publish, resolve): the client config, the verified
// consensus (DirKeeper), and how storage streams are opened — over circuits guard → middle →
// storage node with BEGIN_STORAGE (default, SPEC.md §9.13.1), or direct sessions (--direct,
// §9.13.2, which reveal the client's address). No protocol logic here.
import path from 'node:path';
import { err, errorCode } from '../errors';
import { clientConfigPath, loadDirClientConfig, readClientConfigFile, type DirClientConfig } from '../dir/client-config';
import { bool, int } from '../dir/config-fields';
import { loadEd25519Secret, saveEd25519SecretExclusive } from '../crypto/keys';
import { ed25519Generate, type Ed25519KeyPair } from '../crypto/primitives';
import { isBitcloudError } from '../errors';
import { exitStatusOf, isReportedFailure } from './exit-status';
import { createLogger, silentLogger, type Logger } from '../ops/log';
import { connectStorageDirect } from '../storage/direct';
import { CircuitNames, type NameLookups } from './circuit-names';
import { MirrorNames } from './name-mirrors';
import { commandSaveWarning, GuardSet, type CommandSaveOutcome } from './guards';
import { CircuitManager } from './circuit-manager';
import { DirKeeper } from './dir-keeper';
import { CircuitBuilder } from './circuit-builder';
import { guardDirSources } from './guard-dir';
import { StorageClient, nameNodesOf, storageNodesOf, type OpenStorageStream, type StorageNode } from './storage-client';
import { mirrorDescriptorFetcher, openHiddenStorageStream } from '../hidden/client';
import type { ConsensusRelay } from '../dir/types';

/** Storage settings read from the client config beside the directory ones (defaults in one place). */
export interface StorageClientConfig {
  enforceDistinctSubnets: boolean;
  /** Lease asked for on put, seconds (0 = each node's default). */
  leaseSeconds: number;
  /** Accepted for old configs and unused: clients open no DHT socket (SPEC.md §9.14.1). */
  dhtPort: number;
}

export function readStorageClientConfig(file: string): StorageClientConfig {
  const raw = readClientConfigFile(file);
  return {
    enforceDistinctSubnets: bool(raw.enforceDistinctSubnets, 'enforceDistinctSubnets', true),
    leaseSeconds: int(raw.leaseSeconds, 'leaseSeconds', 0, 10 * 365 * 86_400, 0),
    dhtPort: int(raw.dhtPort, 'dhtPort', 0, 65535, 0),
  };
}

export interface NetworkOptions {
  config?: string;
  dataDir?: string;
  log?: Logger;
}

export interface Network {
  dirCfg: DirClientConfig;
  cfg: StorageClientConfig;
  dir: DirKeeper;
  /** The guard set of state.json, shared by the directory fetches and the circuits. */
  guards: GuardSet;
  /** The directory fetches' builder: it owns the guard links, which the circuits share (SPEC.md §7b.11). */
  builder: CircuitBuilder;
  close(): void;
}

/** The config and a current verified consensus (CONSENSUS_NOT_AVAILABLE when there is none). */
export async function openNetwork(o: NetworkOptions): Promise<Network> {
  const file = clientConfigPath(o.config);
  const dirCfg = loadDirClientConfig(file, { dataDir: o.dataDir });
  const cfg = readStorageClientConfig(file);
  const dir = new DirKeeper({ authorities: dirCfg.authorities, mirrors: dirCfg.mirrors, dataDir: dirCfg.dataDir, log: o.log });
  // SPEC.md §6.10.1: with a guard in state.json and a valid cached consensus, the directory is
  // fetched through the guard's mirror (one-hop circuit, BEGIN_DIR); otherwise directly (bootstrap).
  // SPEC.md §7.2 (State): guards just sampled are saved at once, so that the client's other
  // processes (a running proxy) find them instead of sampling their own; a command waits
  // COMMAND_LOCK_TIMEOUT_MS at most for the lock, so a pending save never holds it open for long.
  const guards: GuardSet = GuardSet.load(path.join(dirCfg.dataDir, 'state.json'), Date.now, { onSampled: () => void guards.saveForCommand(o.log) });
  for (const w of guards.warnings) (o.log ?? silentLogger).warn(w);
  const dirBuilder = new CircuitBuilder({ relays: () => dir.relays(), guards, enforceDistinctSubnets: cfg.enforceDistinctSubnets, log: o.log });
  dir.useGuards(() => guardDirSources(dirBuilder, guards, dir.relays()));
  await dir.start();
  // A cached consensus may predate storage nodes that joined since: ask once more, briefly.
  await Promise.race([dir.refresh(), new Promise((r) => setTimeout(r, 5_000).unref())]);
  // SPEC.md §7.2 (Shared by the client's processes): a command never fails for its guard state
  // save; one that cannot be written (a full disk, a broken data folder) is skipped with a debug line.
  const close = () => {
    dir.stop();
    void dirBuilder.close();
    if (!guards.dirty) return;
    try { guards.saveSync(); } catch (e) { o.log?.debug({ code: errorCode(e), err: (e as Error).message }, 'guard state not saved'); }
  };
  if (!dir.consensus()) {
    close();
    throw err('CONSENSUS_NOT_AVAILABLE', 'no valid consensus from the authorities: cannot find storage nodes');
  }
  return { dirCfg, cfg, dir, guards, builder: dirBuilder, close };
}

export interface StorageSession {
  client: StorageClient;
  network: Network;
  /** Closes the session; the outcome of its last guard state save (SPEC.md §7.2 State). */
  close(): Promise<CommandSaveOutcome>;
}

/** A StorageClient over circuits (default) or direct sessions, for the storage nodes of the consensus. */
export async function openStorageSession(o: NetworkOptions & {
  direct: boolean;
  /** Moderation (SPEC.md §10.8): the class declared on puts, and the nodes an upload may use. */
  contentClass?: string;
  selectNodes?: (nodes: StorageNode[], network: Network) => Promise<StorageNode[]>;
}): Promise<StorageSession> {
  const log = o.log ?? silentLogger;
  const network = await openNetwork(o);
  let nodes = storageNodesOf(network.dir.relays() ?? []);
  if (o.selectNodes) nodes = await o.selectNodes(nodes, network).catch((e) => { network.close(); throw e; });
  let manager: CircuitManager | null = null;
  let open: OpenStorageStream;
  if (o.direct) {
    open = (n) => (n.roles.includes('hidden')
      ? Promise.reject(err('STORAGE_CONNECT_FAILED', 'a hidden storage node has no address: it is reached only over circuits (SPEC.md §9.21)'))
      : connectStorageDirect({ host: n.address, port: n.storagePort, expectedIdentity: n.identity }));
  } else {
    const m = manager = new CircuitManager({
      relays: () => network.dir.relays(), guards: network.guards, enforceDistinctSubnets: network.cfg.enforceDistinctSubnets,
      preemptiveCircuits: 0, log,
      // SPEC.md §7b.11: one link per guard, the directory fetches' (closed when idle by the
      // manager's maintenance, and by network.close()).
      linksFrom: network.builder,
    });
    // One circuit per storage node: guard → middle → the node itself, then BEGIN_STORAGE on it;
    // to a hidden node, a rendezvous circuit (SPEC.md §9.21.5).
    open = circuitStorageOpener(m, () => network.dir.relays());
  }
  const client = new StorageClient({ nodes, open, leaseSeconds: network.cfg.leaseSeconds, contentClass: o.contentClass, log });
  return {
    client, network,
    async close() {
      await client.close();
      await manager?.close();
      // SPEC.md §7.2: the command's last save of the one guard set its directory fetches, circuits
      // and an embedded wallet send used (--direct too); waits 2 s at most, never fails the command.
      const saved = await network.guards.saveForCommand(log);
      network.close();
      return saved;
    },
  };
}

/**
 * A BEGIN_STORAGE stream to a storage node over circuits: the node as last hop (SPEC.md §9.13.1),
 * or, for a hidden node, a rendezvous circuit (SPEC.md §9.21.5).
 */
export function circuitStorageOpener(m: CircuitManager, relays: () => readonly ConsensusRelay[] | null): OpenStorageStream {
  const buildTo = (r: ConsensusRelay) => m.buildCircuitTo(r);
  const fetchDescriptor = mirrorDescriptorFetcher({ relays, buildTo });
  return async (n) => (n.roles.includes('hidden')
    ? openHiddenStorageStream({ node: n, relays, buildTo, fetchDescriptor })
    : m.openStream(await m.buildCircuitTo(n), { kind: 'begin_storage' }));
}

/** The publisher key for names (SPEC.md §9.14), made on first use in the data dir (mode 0600). */
export async function loadOrCreatePublisherKey(dataDir: string): Promise<Ed25519KeyPair> {
  const file = path.join(dataDir, 'publisher.key');
  try {
    return await loadEd25519Secret(file);
  } catch (e) {
    if (!isBitcloudError(e, 'KEY_NOT_FOUND')) throw e;
    const kp = ed25519Generate();
    // SPEC.md §9.14: made once. Another command may have made it since the look above (two
    // `publish` started together on a fresh folder); the key on disk is then the publisher key,
    // never replaced by this one (a name signed under a replaced key could not be updated).
    if (await saveEd25519SecretExclusive(file, kp)) return kp;
    return loadEd25519Secret(file);
  }
}

/**
 * Names over circuits (SPEC.md §9.14.1, §9.14.2): lookups and publications go as DhtGet / DhtPut
 * on BEGIN_STORAGE streams (guard → middle → storage node) when the consensus lists a public
 * storage node, else to the name's 3 relay mirrors (guard → middle → mirror, BEGIN_DIR). Either
 * way the client opens no DHT socket.
 */
export async function openCircuitNames(network: Network, log: Logger = silentLogger): Promise<{ names: NameLookups; close(): Promise<void> }> {
  // SPEC.md §9.21.1: hidden nodes run no DHT; only nodes with a storage port are asked.
  const nodes = nameNodesOf(network.dir.relays() ?? []);
  const guards = network.guards;
  const m = new CircuitManager({
    relays: () => network.dir.relays(), guards, enforceDistinctSubnets: network.cfg.enforceDistinctSubnets,
    preemptiveCircuits: 0, log, linksFrom: network.builder, // SPEC.md §7b.11: one link per guard
  });
  let names: NameLookups;
  try {
    names = nodes.length > 0
      ? new CircuitNames({ nodes, dataDir: network.dirCfg.dataDir, log, open: circuitStorageOpener(m, () => network.dir.relays()) })
      : new MirrorNames({ relays: () => network.dir.relays(), buildTo: (r) => m.buildCircuitTo(r), dataDir: network.dirCfg.dataDir, log });
  } catch (e) {
    await m.close();
    throw e;
  }
  return {
    names,
    async close() {
      await names.close();
      await m.close();
      await guards.saveForCommand(log); // SPEC.md §7.2: waits 2 s at most, never fails the command
    },
  };
}

/**
 * The frame of `bitcloud publish` and `resolve` (SPEC.md §9.14.1): open the network, let `body`
 * open the name lookups over circuits when it needs them, report a failure, close both.
 */
export async function runNamesCommand(
  command: string, a: { json: boolean; config?: string; 'data-dir'?: string; 'log-level'?: string },
  body: (network: Network, names: () => Promise<NameLookups>) => Promise<number>,
): Promise<number> {
  const log = createLogger('bitcloud', { level: a['log-level'] ?? 'warn' });
  const held: { network?: Network; session?: Awaited<ReturnType<typeof openCircuitNames>> } = {};
  try {
    const net = held.network = await openNetwork({ config: a.config, dataDir: a['data-dir'], log });
    return await body(net, async () => (held.session = await openCircuitNames(net, log)).names);
  } catch (e) {
    return reportFailure(command, e, a.json);
  } finally {
    try { await held.session?.close(); } catch (e) { log.debug({ err: (e as Error).message }, 'closing the name lookups failed'); }
    held.network?.close();
  }
}



/** The flags every storage command takes (put, get, renew). */
export interface StorageCommandArgs { json: boolean; direct: boolean; config?: string; 'data-dir'?: string; 'log-level'?: string }

/** Printed on stderr before a --direct command connects (SPEC.md §9.13.2). */
export const DIRECT_WARNING = 'warning: --direct connects to the storage nodes without a circuit: they see your IP address.';

/**
 * The frame of a storage command: logger, the --direct warning, the session (opened with the
 * options `prepare` returns; it may throw a usage error first), failures reported with their code
 * (`onFailure` runs first, e.g. to stop a progress bar), and the session closed in every case.
 * With `warnUnsavedGuards` (a command that sends a wallet transfer), the one stderr line of
 * commandSaveWarning is printed after the close when its last guard state save was skipped.
 */
export async function runStorageCommand<T>(
  command: string, a: StorageCommandArgs,
  prepare: (log: Logger) => T & Partial<Parameters<typeof openStorageSession>[0]> & { warnUnsavedGuards?: boolean },
  run: (session: StorageSession, prepared: T) => Promise<number>,
  onFailure?: () => void,
  /** Where --json results go (default stdout; stderr when stdout carries a file, `get -o -`, SPEC.md §9.9.1). */
  o: { results?: NodeJS.WritableStream } = {},
): Promise<number> {
  const log = createLogger('bitcloud', { level: a['log-level'] ?? 'warn' });
  let session: StorageSession | null = null;
  let warnUnsaved = false;
  try {
    const prepared = prepare(log);
    warnUnsaved = prepared.warnUnsavedGuards ?? false;
    if (a.direct) process.stderr.write(`bitcloud ${command}: ${DIRECT_WARNING}\n`);
    session = await openStorageSession({ ...prepared, config: a.config, dataDir: a['data-dir'], direct: a.direct, log });
    return await run(session, prepared);
  } catch (e) {
    onFailure?.();
    return reportFailure(command, e, a.json, o.results);
  } finally {
    const saved = await session?.close();
    // SPEC.md §7.2 (State): a command that sends a wallet transfer (`keep contract --pay`,
    // `put --pay`) says on stderr, once and at its end, when its last guard state save was skipped.
    const line = saved && warnUnsaved ? commandSaveWarning(saved) : null;
    if (line) process.stderr.write(`bitcloud ${command}: ${line}\n`);
  }
}

/** A failure's code and message, as a command reports them (`--json`: the `error` object). */
export function failureOf(e: unknown): { code: string; message: string } {
  return { code: isBitcloudError(e) ? e.code : 'INTERNAL', message: (e as Error)?.message?.replace(/^[A-Z0-9_]+: /, '') ?? String(e) };
}

/**
 * Print a command's failure (plain on stderr, or JSON on stdout, or `results`) and return its exit
 * code; nothing is printed when stdout's reader went away (SPEC.md §9.10: exit status 141, as `cat`).
 */
export function reportFailure(command: string, e: unknown, json: boolean, results: NodeJS.WritableStream = process.stdout): number {
  const { code, message } = failureOf(e);
  if (!isReportedFailure(code)) return exitStatusOf(code);
  if (json) results.write(JSON.stringify({ ok: false, error: { code, message } }) + '\n');
  else process.stderr.write(`bitcloud ${command}: ${code}: ${message}\n`);
  return exitStatusOf(code);
}
