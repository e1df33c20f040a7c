// "No UDP socket in this process" (SPEC.md §9.14.1, §9.14.2), with two independent witnesses:
// (1) a preload hook that records every dgram.createSocket and Socket#bind in the watched process
// (a test checks it with a positive control), (2) sampling /proc/<pid>/fd while the command runs
// and matching its socket inodes against /proc/net/udp{,6}.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { binPath, REPO_ROOT } from './daemon';

/** The preload hook's source: write it to a file and pass that file to watchedCommand. */
export const DGRAM_HOOK = `
const dgram = require('node:dgram');
const fs = require('node:fs');
const log = (what) => fs.appendFileSync(process.env.BC_DGRAM_LOG, what + ' pid=' + process.pid + '\\n');
const create = dgram.createSocket;
dgram.createSocket = function (...a) { log('createSocket'); return create.apply(this, a); };
const bind = dgram.Socket.prototype.bind;
dgram.Socket.prototype.bind = function (...a) { log('bind'); return bind.apply(this, a); };
require('node:module').syncBuiltinESMExports();
`;

export interface Watched { code: number | string; stdout: string; stderr: string; udpSeen: number; samples: number; hook: string }

function udpInodes(): Set<string> {
  const out = new Set<string>();
  for (const f of ['/proc/net/udp', '/proc/net/udp6']) {
    let text = '';
    try { text = fs.readFileSync(f, 'utf8'); } catch { continue; }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length > 9) out.add(cols[9]);
    }
  }
  return out;
}

function socketInodes(pid: number): string[] {
  const out: string[] = [];
  let fds: string[] = [];
  try { fds = fs.readdirSync(`/proc/${pid}/fd`); } catch { return out; }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) out.push(m[1]);
    } catch { /* closed meanwhile */ }
  }
  return out;
}

/**
 * Run a bitcloud command (or a script) with the dgram hook at `hookFile`, sampling its sockets
 * while it runs; `env` is added to the child's environment. Killed after `timeoutMs`.
 */
export async function watchedCommand(hookFile: string, bin: string, args: string[], logFile: string, o: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<Watched> {
  fs.writeFileSync(logFile, '');
  const child = spawn(process.execPath, [binPath(bin), ...args], {
    cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...o.env, NODE_OPTIONS: `--require ${hookFile}`, BC_DGRAM_LOG: logFile },
  });
  let stdout = '', stderr = '', udpSeen = 0, samples = 0;
  child.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c; });
  child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c; });
  const sampler = setInterval(() => {
    const mine = socketInodes(child.pid!);
    if (mine.length === 0) return;
    samples++;
    const udp = udpInodes();
    udpSeen += mine.filter((i) => udp.has(i)).length;
  }, 5);
  const killer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 240_000);
  const code = await new Promise<number | string>((r) => child.once('close', (c, s) => r(c ?? s ?? 'unknown')));
  clearInterval(sampler);
  clearTimeout(killer);
  return { code, stdout, stderr, udpSeen, samples, hook: fs.readFileSync(logFile, 'utf8') };
}
