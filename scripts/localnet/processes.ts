// The local network's child processes: start each node as its own process with its log in
// DIR/logs/NAME.log, describe them all in DIR/network.json, stop them all by PID.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { writeFileAtomicSync } from '../../src/ops/fsutil';

export interface NodeSpec {
  role: 'authority' | 'relay' | 'exit' | 'storage' | 'client';
  name: string;
  identity: string | null;
  dataDir: string;
  configFile: string;
  ports: Record<string, number>;
  bin: string;
  args: string[];
  /** Many-host network: the node's namespace, address, root-side veth and cap (bytes/s). */
  host?: { ns: string; address: string; veth: string; capBytesPerSec: number };
  /** Prefix of the command line (e.g. `ip netns exec NS`); `ip netns exec` execs, so the PID is the node's. */
  wrap?: string[];
}

interface Running extends NodeSpec { child: ChildProcess; pid: number; log: string; exited: boolean }

export class LocalNetProcesses {
  private readonly nodes: Running[] = [];
  private stopping = false;
  private unexpected: ((name: string, code: number | string) => void) | null = null;
  private extra: Record<string, unknown> = {};

  constructor(private readonly dir: string, private readonly repo: string) {
    fs.mkdirSync(path.join(dir, 'logs'), { recursive: true });
  }

  start(spec: NodeSpec): Running {
    const log = path.join(this.dir, 'logs', `${spec.name}.log`);
    const fd = fs.openSync(log, 'a');
    const argv = [process.execPath, path.join(this.repo, 'bin', `${spec.bin}.js`), ...spec.args];
    const cmd = [...(spec.wrap ?? []), ...argv];
    const child = spawn(cmd[0], cmd.slice(1), {
      cwd: this.repo, stdio: ['ignore', fd, fd], env: { ...process.env },
    });
    fs.closeSync(fd);
    if (!child.pid) throw new Error(`could not start ${spec.name}`);
    const node: Running = { ...spec, child, pid: child.pid, log, exited: false };
    child.on('exit', (code, sig) => {
      node.exited = true;
      if (!this.stopping && this.unexpected) this.unexpected(spec.name, code ?? sig ?? '?');
      this.writeNetworkJson();
    });
    this.nodes.push(node);
    this.writeNetworkJson();
    return node;
  }

  /** DIR/network.json: every node (role, name, identity, ports, pid, data dir, config, log) and the client config. */
  writeNetworkJson(extra?: Record<string, unknown>): void {
    if (extra) this.extra = { ...this.extra, ...extra };
    const doc = {
      launcherPid: process.pid,
      ...this.extra,
      nodes: this.nodes.map((n) => ({
        role: n.role, name: n.name, identity: n.identity, ports: n.ports, pid: n.pid, running: !n.exited,
        dataDir: n.dataDir, config: n.configFile, log: n.log, ...(n.host ? { host: n.host } : {}),
      })),
    };
    writeFileAtomicSync(path.join(this.dir, 'network.json'), JSON.stringify(doc, null, 2) + '\n');
  }

  /** Resolve when NAME's log has a pino line with this msg; reject if it exits or time runs out. */
  async waitForLog(name: string, msg: string, timeoutMs: number): Promise<void> {
    const node = this.nodes.find((n) => n.name === name);
    if (!node) throw new Error(`no node ${name}`);
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      const text = fs.readFileSync(node.log, 'utf8');
      for (const line of text.split('\n')) {
        if (!line.startsWith('{')) continue;
        try { if ((JSON.parse(line) as { msg?: string }).msg === msg) return; } catch { /* partial line */ }
      }
      if (node.exited) throw new Error(`${name} exited before it was ready (see ${node.log})`);
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`${name} was not ready after ${timeoutMs} ms (see ${node.log})`);
  }

  /** The names of nodes that have exited. */
  dead(): string[] {
    return this.nodes.filter((n) => n.exited).map((n) => n.name);
  }

  /** PIDs of nodes still alive (for the teardown report). */
  alivePids(): number[] {
    return this.nodes.filter((n) => { try { process.kill(n.pid, 0); return !n.exited; } catch { return false; } }).map((n) => n.pid);
  }

  /** SIGKILL every node still alive, by PID (an exit hook's last resort). */
  killAllSync(): void {
    this.stopping = true;
    for (const n of this.nodes) if (!n.exited) { try { process.kill(n.pid, 'SIGKILL'); } catch { /* gone */ } }
  }

  onUnexpectedExit(cb: (name: string, code: number | string) => void): void {
    this.unexpected = cb;
  }

  /** SIGTERM every node by PID, SIGKILL what is still alive after 8 s. Clients first, authorities last. */
  async stopAll(): Promise<void> {
    this.stopping = true;
    const order = ['client', 'storage', 'relay', 'exit', 'authority'];
    for (const role of order) {
      const group = this.nodes.filter((n) => n.role === role && !n.exited);
      await Promise.all(group.map((n) => new Promise<void>((resolve) => {
        const kill = setTimeout(() => { try { process.kill(n.pid, 'SIGKILL'); } catch { /* gone */ } }, 8000);
        n.child.once('exit', () => { clearTimeout(kill); resolve(); });
        try { process.kill(n.pid, 'SIGTERM'); } catch { clearTimeout(kill); resolve(); }
        if (n.exited) { clearTimeout(kill); resolve(); }
      })));
    }
    this.writeNetworkJson();
  }
}
