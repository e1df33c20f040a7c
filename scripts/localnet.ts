// `npm start`: a whole Bitcloud network on 127.0.0.1, each node its own process.
// 3 directory authorities, 6+ relays (2+ exits that allow 127.0.0.1), 6 storage nodes and one
// client SOCKS proxy. Writes DIR/network.json describing every node, waits for a consensus,
// shows a download through a 3-hop circuit and a `put`/`get` round trip through circuits to the
// storage nodes, prints the URLs, and runs until Ctrl-C, then stops every process it started
// (by PID).
//
// With --hosts (`npm run testnet -- --hosts`, root only), every authority, relay and storage node
// runs in its own network namespace with its own address in one of several /16s, joined by a bridge,
// each relay capped by tc tbf (--caps, MB/s, cycled over the relays); the client proxy and the demo's
// web server stay in the root namespace, on the bridge. Everything created (namespaces, links,
// processes) is removed on exit, Ctrl-C, SIGTERM or a failed start, by name and PID; the launcher
// prints what is left (nothing). See scripts/localnet/hosts.ts.
//
//   npm start -- [--dir DIR] [--relays N] [--exits N] [--storage N] [--base-port P]
//                [--socks-port P] [--period S] [--relay-crypto tor1|cgo] [--hidden-storage] [--exit-after-demo] [--no-demo]
//   npm run testnet -- --hosts [--caps 2,5,10,20,50] [--declare MBPS] [--unmeasured-cap KBPS] [--probe-seconds S] [--probe-keep-periods K] [--subnets 4] [same options]
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { authorityKeygen } from '../directory/keygen';
import { loadOrCreateNodeKeys, fingerprint } from '../src/crypto/keys';
import { writeFileAtomicSync } from '../src/ops/fsutil';
import { LocalNetProcesses, type NodeSpec } from './localnet/processes';
import { HostNet, hostsSupported, type Host } from './localnet/hosts';
import { sharedAddressUploadLimit } from '../directory/rate-limit';
import { checkPortsFree, fundDemoWallet, runDemo, runPaidContractDemo, runModerationDemo, runStorageDemo, waitForConsensus, waitForPolicy } from './localnet/demo';
import { ModeratorWorkspace } from '../src/moderation/workspace';
import { stateBundle } from '../src/moderation/chain';
import { uploadPolicy } from '../src/moderation/sources';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const argv = await yargs(hideBin(process.argv))
  .scriptName('npm start --')
  .usage('$0 [options]\n\nBring up a whole Bitcloud network on 127.0.0.1 and show it working.')
  .option('dir', { type: 'string', default: path.join(REPO, '.localnet'), describe: 'Folder for keys, configs, logs and network.json' })
  .option('relays', { type: 'number', default: 6, describe: 'Relays (at least 3)' })
  .option('exits', { type: 'number', default: 2, describe: 'How many of the relays are exits allowing 127.0.0.1' })
  .option('storage', { type: 'number', default: 6, describe: 'Storage nodes (0 for none; put stores 4-of-6, so at least 6 for the demo)' })
  .option('moderators', { type: 'number', default: 0, describe: 'Moderators to make; storage node I subscribes to moderator I (at most --storage)' })
  .option('base-port', { type: 'number', default: 27000, describe: 'First port; the network uses the next ~100' })
  .option('socks-port', { type: 'number', default: 9050, describe: 'Client SOCKS5 port' })
  .option('period', { type: 'number', default: 15, describe: 'Consensus period, seconds' })
  .option('demo', { type: 'boolean', default: true, describe: 'Show a download through a 3-hop circuit (and a put/get)' })
  .option('exit-after-demo', { type: 'boolean', default: false, describe: 'Stop everything after the demo (for CI)' })
  .option('keep', { type: 'boolean', default: false, describe: 'Keep the data of an earlier run in --dir (default: start afresh)' })
  .option('hidden-storage', { type: 'boolean', default: false, describe: 'Every storage node runs hidden: no address in the consensus, reached by rendezvous (SPEC.md §9.21)' })
  .option('relay-crypto', { choices: ['tor1', 'cgo'] as const, default: 'tor1' as const, describe: "The client proxy's relay crypto (SPEC.md §5.6.1)" })
  .option('hosts', { type: 'boolean', default: false, describe: 'Each node in its own network namespace and address (root only)' })
  .option('caps', { type: 'string', default: '2,5,10,20,50', describe: 'With --hosts: relay bandwidth caps, MB/s, cycled over the relays (0 = none)' })
  .option('declare', { type: 'number', describe: 'With --hosts: the bandwidth every relay declares, MB/s (default: its cap)' })
  .option('probe-seconds', { type: 'number', default: 0, describe: "The authorities' capacity probes (SPEC.md §8.12): seconds per probe; 0 = no probes" })
  .option('probe-keep-periods', { type: 'number', default: 3, describe: "With --probe-seconds: a relay's figure is its highest probe of this many periods (SPEC.md §8.12 keepPeriods)" })
  .option('unmeasured-cap', { type: 'number', default: 10_000, describe: "The authorities' weight floor and cap for unmeasured relays, KB/s (SPEC.md §6.6)" })
  .option('subnets', { type: 'number', default: 4, describe: 'With --hosts: how many /16s the nodes are spread over (at least 4)' })
  .option('wait', { type: 'number', describe: 'Seconds to wait for the first full consensus (default 6 periods + 30 s; more on a busy machine)' })
  .check((a) => {
    if (a.relays < 3) throw new Error('--relays must be at least 3');
    if (a.exits < 1 || a.exits > a.relays - 2) throw new Error('--exits must be between 1 and relays - 2');
    if (a.storage < 0) throw new Error('--storage must be 0 or more');
    if (a.declare !== undefined && !(a.declare > 0)) throw new Error('--declare takes MB/s, more than 0');
    if (!Number.isInteger(a['unmeasured-cap']) || a['unmeasured-cap'] < 1) throw new Error('--unmeasured-cap takes a whole number of KB/s, at least 1');
    if (a.subnets < 4) throw new Error('--subnets must be at least 4');
    if (!Number.isInteger(a['probe-seconds']) || a['probe-seconds'] < 0) throw new Error('--probe-seconds takes a whole number of seconds, 0 for none');
    if (!Number.isInteger(a['probe-keep-periods']) || a['probe-keep-periods'] < 1 || a['probe-keep-periods'] > 24) throw new Error('--probe-keep-periods takes a whole number of periods, 1 to 24');
    if (!String(a.caps).split(',').every((c) => Number.isFinite(Number(c)) && Number(c) >= 0)) throw new Error('--caps takes MB/s numbers, e.g. 2,5,10');
    if (a.moderators < 0 || a.moderators > a.storage) throw new Error('--moderators must be between 0 and --storage');
    return true;
  })
  .strict()
  .help()
  .parseAsync();

const dir = path.resolve(argv.dir);
const lockFile = path.join(dir, 'localnet.pid');

function say(s: string): void { process.stdout.write(`${s}\n`); }

// One network per folder and per port range: a second `npm start` says so instead of a port-clash trace.
function takeLock(): void {
  fs.mkdirSync(dir, { recursive: true });
  try {
    const other = Number(fs.readFileSync(lockFile, 'utf8').trim());
    if (other && other !== process.pid) {
      try {
        process.kill(other, 0);
        say(`bitcloud: a local network is already running from ${dir} (launcher pid ${other}).`);
        say(`Stop it with Ctrl-C in its terminal (or: kill ${other}), or start another with --dir DIR --base-port P --socks-port P.`);
        process.exit(1);
      } catch { /* stale lock: that launcher is gone */ }
    }
  } catch { /* no lock */ }
  fs.writeFileSync(lockFile, String(process.pid));
}

takeLock();
const P = argv['base-port'];
const ports = {
  auth: (i: number) => P + i,
  // SPEC.md §6.10: every daemon serves /metrics only on its own MetricsPort (127.0.0.1).
  authMetrics: (i: number) => P + 3 + i,
  relayMetrics: (i: number) => P + 100 + i,
  relayOr: (i: number) => P + 10 + 2 * i,
  relayDir: (i: number) => P + 11 + 2 * i,
  storageOr: (i: number) => P + 50 + 3 * i,
  storagePort: (i: number) => P + 51 + 3 * i,
  storageMetrics: (i: number) => P + 52 + 3 * i,
  proxyMetrics: P + 99,
};
// With --hosts only the proxy's ports are on this namespace's 127.0.0.1.
const wanted = argv.hosts ? [ports.proxyMetrics, argv['socks-port']] : [
  ...[0, 1, 2].map(ports.auth), ...[0, 1, 2].map(ports.authMetrics),
  ...Array.from({ length: argv.relays }, (_, i) => [ports.relayOr(i), ports.relayDir(i), ports.relayMetrics(i)]).flat(),
  ...Array.from({ length: argv.storage }, (_, i) => [ports.storageOr(i), ports.storagePort(i), ports.storageMetrics(i)]).flat(),
  ports.proxyMetrics, argv['socks-port'],
];
const busy = await checkPortsFree(wanted);
if (busy.length) {
  fs.rmSync(lockFile, { force: true });
  say(`bitcloud: ports already in use on 127.0.0.1: ${busy.join(', ')}.`);
  say('Is another local network (or a tor client on 9050) running? Choose others with --base-port P --socks-port P.');
  process.exit(1);
}

if (!argv.keep) {
  for (const e of await fsp.readdir(dir)) if (e !== 'localnet.pid') await fsp.rm(path.join(dir, e), { recursive: true, force: true });
}
const procs = new LocalNetProcesses(dir, REPO);
let hostNet: HostNet | null = null;
let stopping = false;
function teardownHosts(): void {
  if (!hostNet) return;
  const left = hostNet.teardown();
  const alive = procs.alivePids();
  say(`teardown: ${left.namespaces.length} namespaces, ${left.links.length} links, ${alive.length} processes left`
    + (left.namespaces.length + left.links.length + alive.length ? ` (${[...left.namespaces, ...left.links, ...alive.map(String)].join(', ')})` : ''));
}
let stopped: Promise<void> | null = null;
/**
 * Stops everything, then exits. A second call (Ctrl-C kills the daemons, so the start-up wait
 * fails and asks to shut down too) waits for the first to finish its teardown instead of exiting
 * half way through it; the first caller's exit code wins.
 */
async function shutdown(code: number): Promise<never> {
  if (!stopped) {
    stopping = true;
    stopped = (async () => {
      say('\nstopping the local network...');
      await procs.stopAll();
      teardownHosts();
      fs.rmSync(lockFile, { force: true });
      say('stopped.');
      process.exit(code);
    })();
  }
  await stopped;
  return process.exit(code);
}
process.on('SIGINT', () => void shutdown(0));
process.on('SIGTERM', () => void shutdown(0));
// Last resort (an exception nobody caught): kill by PID and remove namespaces synchronously.
process.on('exit', () => { if (!stopping) { procs.killAllSync(); teardownHosts(); } });

// --- with --hosts: one namespace per node; nodes' addresses and the wrapper that runs them there ---
const caps = String(argv.caps).split(',').map((c) => Number(c) * 1_000_000);
const hostOf = new Map<string, Host>();
function placeNode(name: string, subnet: number, capBytesPerSec: number): string {
  if (!hostNet) return '127.0.0.1';
  const h = hostNet.add({ name, subnet, capBytesPerSec });
  hostOf.set(name, h);
  return h.address;
}
/**
 * Where a node's MetricsPort listens: 127.0.0.1 on loopback; with --hosts, the node's own address
 * on the test bridge (reachable only from the launcher's namespace and the other test hosts), so
 * the launcher and the fault suite can read it from outside the node's namespace.
 */
function metricsHostFor(addr: string): string { return hostNet ? addr : '127.0.0.1'; }
function inHost(name: string): Pick<NodeSpec, 'wrap' | 'host'> {
  const h = hostOf.get(name);
  if (!h || !hostNet) return {};
  return { wrap: hostNet.exec(h, []), host: { ns: h.ns, address: h.address, veth: h.veth, capBytesPerSec: h.capBytesPerSec } };
}

try {
  if (argv.hosts) {
    const can = hostsSupported();
    if (!can.ok) throw new Error(`--hosts needs root, ip netns, veth, a bridge and tc: ${can.why}`);
    hostNet = new HostNet(argv.subnets);
    hostNet.up();
    say(`hosts: bridge ${hostNet.bridge}, /16s ${hostNet.octets.map((o) => `10.${o}.0.0/16`).join(' ')}, prefix ${hostNet.prefix}; `
      + `latency ${hostNet.netem ? 'emulated (netem)' : 'not emulated (no netem in this kernel)'}`);
  }
  // Where the client and the demo's web server are: 127.0.0.1, or the bridge's address in /16 #0.
  const rootAddr = hostNet ? hostNet.gateway(0) : '127.0.0.1';
  // --- authorities: keys, certificates and one shared list ---
  const auths = [];
  for (let i = 0; i < 3; i++) {
    const dataDir = path.join(dir, `auth${i + 1}`);
    const k = await authorityKeygen(dataDir);
    const addr = placeNode(`auth${i + 1}`, 0, 0);
    auths.push({ name: `auth${i + 1}`, fingerprint: k.fingerprint, port: ports.auth(i), metricsPort: ports.authMetrics(i), dataDir, addr });
  }
  const authorityList = auths.map((a) => ({ name: a.name, identity: a.fingerprint, address: `${a.addr}:${a.port}` }));
  for (const a of auths) {
    const configFile = path.join(dir, `${a.name}.json`);
    writeFileAtomicSync(configFile, JSON.stringify({
      identity: a.fingerprint, dataDir: a.dataDir, listen: { host: a.addr, port: a.port }, period: argv.period,
      authorities: authorityList, reachability: { timeoutMs: 3000 }, stableAfterSeconds: argv.period,
      // Proof of bandwidth on loopback (SPEC.md §8.5): only the family and declared-bandwidth bounds,
      // so reward blocks follow the countersigned counts exactly. Every relay declares 10 MB/s and
      // is weighted at that: proofs decide rewards here, not path weights, so demo traffic does not
      // move the Guard threshold in the middle of a run. A lower --unmeasured-cap lets proofs decide
      // the weights too (the fault suite's scenario 10).
      bandwidthBounds: 'local', unmeasuredCapKBps: argv['unmeasured-cap'],
      // SPEC.md §8.12: with --probe-seconds the authorities measure each relay's capacity themselves.
      ...(argv['probe-seconds'] > 0 ? { probe: { enabled: true, seconds: argv['probe-seconds'], maxBytes: 64 << 20, inFlight: 256, keepPeriods: argv['probe-keep-periods'] } } : {}),
      metricsPort: a.metricsPort, metricsHost: metricsHostFor(a.addr),
      // Every node of this network is on 127.0.0.1 or a private test address (SPEC.md §6.3): refused without this flag.
      testNetwork: true,
      // On loopback every node uploads from 127.0.0.1: a per-address bucket sized for all of them.
      rateLimit: sharedAddressUploadLimit(argv.relays + argv.storage, argv.period),
      // SPEC.md §6.4.1: cheap identity proofs (8 MiB, one pass, 1 bit) so `npm start` stays fast.
      identityPow: 'local',
      // SPEC.md §6.5, §8.11.3: every node here decodes funding transfers (version 4): they are on.
      consensusParams: { 'funding-v2': 1 },
    }, null, 2));
    procs.start({ role: 'authority', name: a.name, identity: a.fingerprint, dataDir: a.dataDir, configFile,
      ports: { http: a.port, metrics: a.metricsPort }, bin: 'bitcloud-dirauth', args: ['run', '--config', configFile], ...inHost(a.name) });
  }

  // --- moderators (SPEC.md §10): keys, a policy admitting encrypted-private and public-any, signed
  // and uploaded to the authorities before the storage nodes that subscribe to them start ---
  const moderators: { name: string; fingerprint: string; dir: string }[] = [];
  for (let i = 0; i < argv.moderators; i++) {
    const name = `mod${i + 1}`;
    const modDir = path.join(dir, name);
    const ws = await ModeratorWorkspace.create(modDir, `localnet ${name}`);
    ws.allow('public-any');
    await ws.saveWorking();
    const state = await ws.signNext();
    const bundle = stateBundle(state);
    for (const a of auths) {
      const until = Date.now() + 30_000;
      for (;;) {
        try { await uploadPolicy(`http://${a.addr}:${a.port}`, ws.fingerprint, bundle); break; } catch (e) {
          if (Date.now() > until) throw new Error(`could not publish ${name}'s policy to ${a.name}: ${(e as Error).message}`, { cause: e });
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    }
    moderators.push({ name, fingerprint: ws.fingerprint, dir: modDir });
  }
  const policyRefreshSeconds = Math.max(2, Math.floor(argv.period / 3));

  const relayAddrs: string[] = [];
  const relayDirs: { name: string; dataDir: string }[] = [];
  // --- relays: the last `exits` are exits that allow 127.0.0.1 (the default policy rejects loopback) ---
  for (let i = 0; i < argv.relays; i++) {
    const name = `relay${i + 1}`;
    const dataDir = path.join(dir, name);
    const keys = await loadOrCreateNodeKeys(dataDir);
    const isExit = i >= argv.relays - argv.exits;
    relayDirs.push({ name, dataDir });
    const configFile = path.join(dir, `${name}.json`);
    // With --hosts: relays over /16s #1..#(subnets-1), so some share a /16 (one per path, SPEC.md §7.1.3).
    const cap = hostNet ? caps[i % caps.length] : 0;
    const addr = placeNode(name, 1 + (i % (argv.subnets - 1)), cap);
    relayAddrs.push(addr);
    writeFileAtomicSync(configFile, JSON.stringify({
      dataDir, nickname: name, address: addr, orPort: ports.relayOr(i), dirPort: ports.relayDir(i),
      metricsPort: ports.relayMetrics(i), metricsHost: metricsHostFor(addr),
      // An operator declares what its link carries: with --hosts, the relay's cap (SPEC.md §8.5).
      // --declare: every relay declares the same (over-stated) figure, so only proofs can order them.
      roles: isExit ? ['relay', 'exit'] : ['relay'], bandwidth: hostNet && argv.declare !== undefined ? Math.round(argv.declare * 1_000_000) : cap > 0 ? cap : 10_000_000,
      // SPEC.md §7.6.1: these exits reach one address of the test network, a private one, so the
      // `reject private:*` put before an exit's rules by default is turned off.
      ...(isExit ? { exitPolicy: [`accept ${rootAddr}:*`, 'reject *:*'], exitPolicyRejectPrivate: false } : {}),
      authorities: authorityList, publishIntervalSeconds: argv.period, descriptorLifetimeSeconds: 3600, mirrorIntervalSeconds: Math.max(2, Math.floor(argv.period / 3)),
      identityPow: 'local',
    }, null, 2));
    procs.start({ role: isExit ? 'exit' : 'relay', name, identity: fingerprint(keys.identity.publicKey), dataDir, configFile,
      ports: { or: ports.relayOr(i), dir: ports.relayDir(i), metrics: ports.relayMetrics(i) }, bin: 'bitcloud-relay', args: ['run', '--config', configFile], ...inHost(name) });
  }

  // --- storage nodes: node I subscribes to moderator I when there is one, the others are
  // unmoderated (encrypted content over circuits only, SPEC.md §10). A declared bandwidth below
  // the relays' keeps them from raising the Guard threshold (directory/flags.ts). ---
  for (let i = 0; i < argv.storage; i++) {
    const name = `store${i + 1}`;
    const dataDir = path.join(dir, name);
    const keys = await loadOrCreateNodeKeys(dataDir);
    const configFile = path.join(dir, `${name}.json`);
    const addr = placeNode(name, 1 + (i % (argv.subnets - 1)), 0);
    writeFileAtomicSync(configFile, JSON.stringify({
      dataDir, nickname: name, address: addr, orPort: ports.storageOr(i), storagePort: ports.storagePort(i),
      metricsPort: ports.storageMetrics(i), metricsHost: metricsHostFor(addr), quota: '1GiB', bandwidth: 100_000,
      authorities: authorityList, publishIntervalSeconds: argv.period, descriptorLifetimeSeconds: 3600, announceIntervalSeconds: 30, identityPow: 'local',
      ...(i < moderators.length ? { moderators: [moderators[i].fingerprint], policyRefreshSeconds } : { unmoderated: true }),
      // SPEC.md §9.21: a hidden node binds no port (those above stay unused) and builds circuits.
      ...(argv['hidden-storage'] ? { hidden: true, enforceDistinctSubnets: !!hostNet } : {}),
    }, null, 2));
    procs.start({ role: 'storage', name, identity: fingerprint(keys.identity.publicKey), dataDir, configFile,
      ports: { or: ports.storageOr(i), storage: ports.storagePort(i), metrics: ports.storageMetrics(i) }, bin: 'bitcloud-storage', args: ['run', '--config', configFile], ...inHost(name) });
  }

  // --- the client: one config file that `bitcloud <command> --config FILE` and the proxy read ---
  const clientDir = path.join(dir, 'client');
  const clientConfig = path.join(dir, 'client.json');
  const mirrors = Array.from({ length: Math.min(2, argv.relays) }, (_, i) => `${relayAddrs[i]}:${ports.relayDir(i)}`);
  writeFileAtomicSync(clientConfig, JSON.stringify({
    authorities: authorityList, dataDir: clientDir,
    mirrors,
    socksPort: argv['socks-port'], metricsPort: ports.proxyMetrics,
    // On 127.0.0.1 the one-relay-per-/16 rule would forbid every path; with --hosts it holds.
    enforceDistinctSubnets: !!hostNet,
    relayCrypto: argv['relay-crypto'],
  }, null, 2));
  const moderatorsJson = moderators.map((m, i) => ({ name: m.name, fingerprint: m.fingerprint, dir: m.dir, subscribers: [`store${i + 1}`] }));
  procs.writeNetworkJson({ clientConfig, socks: `127.0.0.1:${argv['socks-port']}`, period: argv.period, moderators: moderatorsJson, ready: false,
    ...(hostNet ? { hosts: { prefix: hostNet.prefix, bridge: hostNet.bridge, subnets: hostNet.octets.map((o) => `10.${o}.0.0/16`), webAddress: rootAddr, latency: hostNet.netem ? 'netem' : 'not emulated' } } : {}) });

  say(`bitcloud local network in ${dir}: 3 authorities, ${argv.relays} relays (${argv.exits} exits), ${argv.storage}${argv['hidden-storage'] ? ' hidden' : ''} storage nodes${moderators.length ? ` (${moderators.length} moderated)` : ''}; waiting for a consensus...`);
  const consensus = await waitForConsensus(authorityList, argv.relays, procs, (argv.wait ?? 6 * argv.period + 30) * 1000, mirrors.map((m) => `http://${m}`), argv.storage);
  say(`consensus: ${consensus.relays} relays and ${consensus.storage} storage nodes listed, signed by ${consensus.signers} of 3 authorities.`);

  procs.start({ role: 'client', name: 'proxy', identity: null, dataDir: clientDir, configFile: clientConfig,
    ports: { socks: argv['socks-port'], metrics: ports.proxyMetrics }, bin: 'bitcloud', args: ['proxy', '--config', clientConfig] });
  await procs.waitForLog('proxy', 'SOCKS5 proxy listening', 60_000);
  const moderatedLogs = moderators.map((_, i) => path.join(dir, 'logs', `store${i + 1}.log`));
  if (moderators.length) await waitForPolicy(moderatedLogs, 1, 60_000);
  procs.writeNetworkJson({ clientConfig, socks: `127.0.0.1:${argv['socks-port']}`, period: argv.period, ready: true });

  let demoCapability: string | null = null;
  if (argv.demo) {
    const r = await runDemo(argv['socks-port'], rootAddr);
    say(`demo: downloaded ${r.bytes} bytes through a 3-hop circuit in ${r.ms} ms; sha256 matches (${r.sha256.slice(0, 16)}...).`);
    if (argv.storage >= 6) {
      const s = await runStorageDemo(REPO, dir, clientConfig);
      demoCapability = s.capability;
      say(`demo: put ${s.bytes} bytes through ${argv['hidden-storage'] ? 'rendezvous circuits to the hidden' : 'circuits to the'} storage nodes in ${s.putMs} ms, got them back in ${s.getMs} ms; sha256 matches.`);
      say(`      read capability: ${s.capability}`);
    }
    if (moderators.length) {
      const m = await runModerationDemo(REPO, dir, clientConfig, moderators, moderatedLogs, policyRefreshSeconds * 1000);
      say(`demo: a public file (class public-any) went to a moderated node; its moderators denied it by content (moderator deny-content, publish);`);
      say(`      the same bytes under another name were refused: ${m.refusal}`);
      say(`      and a get of the original: ${m.getRefusal}`);
    }
  }

  say('');
  say('The network is up:');
  // The exits allow rootAddr only: on loopback the first authority's status page is there to fetch.
  const example = auths[0].addr === rootAddr ? `http://${rootAddr}:${auths[0].port}/` : `http://${rootAddr}:PORT/   (a web server of yours on ${rootAddr}: the exits allow no other address)`;
  say(`  SOCKS5 proxy     127.0.0.1:${argv['socks-port']}   e.g. curl --socks5-hostname 127.0.0.1:${argv['socks-port']} ${example}`);
  for (const a of auths) say(`  status page      http://${a.addr}:${a.port}/          (${a.name}; metrics at http://${metricsHostFor(a.addr)}:${a.metricsPort}/metrics)`);
  say(`  relay metrics    http://${metricsHostFor(relayAddrs[0])}:${ports.relayMetrics(0)}/metrics  (each relay's MetricsPort: ${ports.relayMetrics(0)}..${ports.relayMetrics(argv.relays - 1)})`);
  if (argv.storage > 0) say(`  storage metrics  each storage node's MetricsPort, ${ports.storageMetrics(0)} on`);
  say(`  client metrics   http://127.0.0.1:${ports.proxyMetrics}/metrics`);
  say(`  client commands  bitcloud consensus --config ${clientConfig}`);
  say(`  rewards          npx bitcloud rewards --config ${clientConfig}`);
  say(`  wallet           npx bitcloud wallet balance --config ${clientConfig}${argv.demo ? '   (the demo wallet: a relay sends it 1 coin once it earned 2; 0.5 of it then pays to store the demo file)' : ''}`);
  say(`  a relay's view   npx bitcloud-relay status --config ${path.join(dir, 'relay1.json')}   (proven bandwidth, earnings)`);
  if (argv.storage > 0) {
    say(`  store a file     npx bitcloud put FILE --config ${clientConfig}`);
    say(`  fetch it         npx bitcloud get CAPABILITY -o OUT --config ${clientConfig}`);
    say(`  stop a node      npm run localnet:stop-node -- ${dir === path.join(REPO, '.localnet') ? '' : `--dir ${dir} `}store1   (any node name in network.json)`);
  }
  for (const [i, m] of moderators.entries()) say(`  moderator ${m.name}   ${m.fingerprint.slice(0, 16)}…  (store${i + 1} subscribes)  npx bitcloud moderator show --data-dir ${m.dir}`);
  say(`  every node       ${path.join(dir, 'network.json')}   logs in ${path.join(dir, 'logs')}`);
  if (argv['exit-after-demo']) await shutdown(0);
  say('\nPress Ctrl-C to stop everything.');
  // SPEC.md §8.11: once a relay has earned 2 coins, it pays 1 to the client's wallet (in the
  // background; only with the demo, so tests' balances are the allocations alone).
  if (argv.demo) void fundDemoWallet(authorityList, argv.period, clientDir, relayDirs, () => stopping).then((f) => {
    if (f) say(`demo: ${f.relay} sent 1 coin from its identity key to the demo wallet ${f.wallet.slice(0, 16)}… (block ${f.height}); see npx bitcloud wallet history --config ${clientConfig}`);
    // SPEC.md §9.20.4: the demo file's storage, paid from that coin (escrow, paid per passed audit).
    if (f && demoCapability && !stopping) {
      return runPaidContractDemo(REPO, clientConfig, demoCapability).then((p) => say(p.ok
        ? `demo: paid upload: contract ${p.contract.slice(0, 16)}… escrows ${p.pay} coin for ${p.epochs} epochs (${p.detail}); the holders are paid per passed audit, the rest comes back: npx bitcloud wallet history --config ${clientConfig}`
        : `note: the paid-contract demo failed: ${p.detail}`));
    }
  }, (e) => say(`note: funding the demo wallet failed: ${(e as Error).message}`));
  procs.onUnexpectedExit((name, code) => say(`note: ${name} exited (${code}); see its log in ${path.join(dir, 'logs')}`));
} catch (e) {
  if (stopping) await shutdown(130); // interrupted: the daemons were stopped on purpose
  say(`bitcloud: the local network did not come up: ${(e as Error).message}`);
  say(`Logs are in ${path.join(dir, 'logs')}.`);
  await shutdown(1);
}
