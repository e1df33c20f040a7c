// The many-host test network (`npm run testnet -- --hosts`): every node in its own Linux network
// namespace with its own address, all joined by one bridge that this run creates, addresses in
// several /16s of 10.0.0.0/8 that no route of this machine already covers, and a per-node bandwidth
// cap (tc tbf on both ends of the node's veth pair). Namespaces and links are named with a prefix
// unique to this run (`bcn<pid base36>-`), so teardown removes exactly what this run created, by
// name. No namespace has a default route: traffic flows only between our namespaces and the
// bridge's own addresses in the root namespace (where the launcher, the client proxy and the test
// web server live).
//
// Latency: the kernel here has no netem, so latency is emulated only if `tc qdisc add ... netem`
// works (probed once; `netemAvailable`).
import { spawnSync } from 'node:child_process';

export interface HostSpec {
  /** The node's name (auth1, relay3, store2...). */
  name: string;
  /** Which of the run's /16s (0..subnets-1) the node's address is in. */
  subnet: number;
  /** Bandwidth cap, bytes per second, each direction; 0 = none. */
  capBytesPerSec: number;
}

export interface Host extends HostSpec {
  ns: string;
  /** The root-side end of the veth pair (fault: `ip link set ... down`). */
  veth: string;
  address: string;
}

function ip(args: string[], allowFail = false): string {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0 && !allowFail) throw new Error(`ip ${args.join(' ')}: ${(r.stderr || r.stdout).trim()}`);
  return r.stdout;
}

function tc(args: string[], allowFail = false): boolean {
  const r = spawnSync('tc', args, { encoding: 'utf8' });
  if (r.status !== 0 && !allowFail) throw new Error(`tc ${args.join(' ')}: ${(r.stderr || r.stdout).trim()}`);
  return r.status === 0;
}

/** The prefix of every namespace and link a run with this PID creates. */
export function runPrefix(pid: number): string {
  return `bcn${pid.toString(36)}-`;
}

/** Namespaces and links whose names start with `prefix` (what teardown must leave at zero). */
export function leftovers(prefix: string): { namespaces: string[]; links: string[] } {
  const namespaces = ip(['netns', 'list'], true).split('\n').map((l) => l.split(' ')[0]).filter((n) => n.startsWith(prefix));
  const links = ip(['-o', 'link', 'show'], true).split('\n')
    .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1] ?? '').filter((n) => n.startsWith(prefix));
  return { namespaces, links };
}

/** Whether this machine can build the many-host network (root, `ip netns`, veth, bridge). */
export function hostsSupported(): { ok: boolean; why: string } {
  if (process.getuid?.() !== 0) return { ok: false, why: 'not root' };
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return { ok: false, why: `ip netns unavailable: ${r.error?.message ?? r.stderr}` };
  const t = spawnSync('tc', ['-V'], { encoding: 'utf8' });
  if (t.error) return { ok: false, why: 'tc unavailable' };
  return { ok: true, why: '' };
}

/** Second octets of `count` /16s of 10/8 that no route of the root namespace overlaps. */
function freeSubnets(count: number, pid: number): number[] {
  const routes = ip(['-4', 'route', 'show', 'table', 'all'], true) + ip(['-4', '-o', 'addr', 'show'], true);
  const used = new Set<number>();
  for (const m of routes.matchAll(/\b10\.(\d+)\.\d+\.\d+(?:\/(\d+))?/g)) {
    if (m[2] && Number(m[2]) < 16) return []; // a route covering more than a /16 of 10/8: stay out
    used.add(Number(m[1]));
  }
  // Start from a PID-dependent place so parallel runs rarely even try the same octets.
  const out: number[] = [];
  for (let k = 0; k < 250 && out.length < count; k++) {
    const o = 20 + ((pid * 7 + k) % 230);
    if (!used.has(o) && !out.includes(o)) out.push(o);
  }
  return out.length === count ? out : [];
}

export class HostNet {
  readonly prefix: string;
  readonly bridge: string;
  readonly octets: number[];
  readonly hosts: Host[] = [];
  /** Whether netem works here (probed by up()); the launcher says latency is not emulated when not. */
  netem = false;
  private torn = false;

  constructor(readonly subnets: number, pid = process.pid) {
    this.prefix = runPrefix(pid);
    this.bridge = `${this.prefix}br`;
    this.octets = freeSubnets(subnets, pid);
    if (this.octets.length !== subnets) throw new Error(`no ${subnets} free /16s in 10.0.0.0/8 on this machine`);
  }

  /** The bridge's own address in /16 number `subnet` (the root namespace's side: proxy, web server). */
  gateway(subnet = 0): string {
    return `10.${this.octets[subnet]}.0.1`;
  }

  /** Create the bridge, with one address in each /16. */
  up(): void {
    ip(['link', 'add', this.bridge, 'type', 'bridge']);
    for (let s = 0; s < this.subnets; s++) ip(['addr', 'add', `${this.gateway(s)}/16`, 'dev', this.bridge]);
    ip(['link', 'set', this.bridge, 'up']);
    this.netem = tc(['qdisc', 'add', 'dev', this.bridge, 'root', 'netem', 'delay', '1ms'], true);
    if (this.netem) tc(['qdisc', 'del', 'dev', this.bridge, 'root'], true);
  }

  /** A namespace for one node: veth pair into the bridge, an address, routes to our /16s only, the cap. */
  add(spec: HostSpec): Host {
    const idx = this.hosts.length;
    const ns = `${this.prefix}${spec.name}`;
    const veth = `${this.prefix}v${idx}`;
    const peer = `${this.prefix}p${idx}`;
    if (veth.length > 15) throw new Error(`link name ${veth} is too long`);
    const perSubnet = this.hosts.filter((h) => h.subnet === spec.subnet).length;
    const address = `10.${this.octets[spec.subnet]}.${1 + Math.floor((perSubnet + 2) / 250)}.${(perSubnet + 2) % 250}`;
    const host: Host = { ...spec, ns, veth, address };
    this.hosts.push(host); // before creating anything: teardown removes what exists of it
    ip(['netns', 'add', ns]);
    ip(['link', 'add', veth, 'type', 'veth', 'peer', 'name', peer]);
    ip(['link', 'set', peer, 'netns', ns]);
    ip(['link', 'set', veth, 'master', this.bridge, 'up']);
    ip(['-n', ns, 'link', 'set', 'lo', 'up']);
    ip(['-n', ns, 'link', 'set', peer, 'name', 'eth0']);
    ip(['-n', ns, 'addr', 'add', `${address}/16`, 'dev', 'eth0']);
    ip(['-n', ns, 'link', 'set', 'eth0', 'up']);
    for (let s = 0; s < this.subnets; s++) {
      if (s === spec.subnet) continue;
      ip(['-n', ns, 'route', 'add', `10.${this.octets[s]}.0.0/16`, 'dev', 'eth0']);
    }
    if (spec.capBytesPerSec > 0) this.setCap(host, spec.capBytesPerSec);
    return host;
  }

  /** tc tbf on both ends of the node's veth: its upload (inside) and its download (root side). */
  setCap(host: Host, bytesPerSec: number): void {
    const rate = `${Math.max(8, Math.round(bytesPerSec * 8 / 1000))}kbit`;
    // Burst: at least one 10 ms slice of the rate and 64 KiB (tbf needs burst >= rate/HZ).
    const burst = `${Math.max(64 * 1024, Math.round(bytesPerSec / 100))}`;
    const args = ['qdisc', 'replace', 'dev', '', 'root', 'tbf', 'rate', rate, 'burst', burst, 'latency', '200ms'];
    args[3] = 'eth0';
    tc(['-n', host.ns, ...args]);
    args[3] = host.veth;
    tc(args);
    host.capBytesPerSec = bytesPerSec;
  }

  /** Fault: the node's link down (partition) or up again. */
  link(host: Host, up: boolean): void {
    ip(['link', 'set', host.veth, up ? 'up' : 'down']);
  }

  /** The argv that runs `cmd` inside the node's namespace (`ip netns exec` execs: the PID is the node's). */
  exec(host: Host, cmd: string[]): string[] {
    return ['ip', 'netns', 'exec', host.ns, ...cmd];
  }

  /** Remove every namespace and link of this run, by name. Synchronous (safe in an exit hook). Idempotent. */
  teardown(): { namespaces: string[]; links: string[] } {
    if (!this.torn) {
      this.torn = true;
      for (const h of this.hosts) {
        ip(['netns', 'del', h.ns], true);
        ip(['link', 'del', h.veth], true);
      }
      ip(['link', 'del', this.bridge], true);
    }
    return leftovers(this.prefix);
  }
}
