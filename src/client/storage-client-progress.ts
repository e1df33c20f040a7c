// How put and get report progress (SPEC.md §11.6): a progress bar (cli-progress) on a terminal,
// a plain line every 10% otherwise, nothing with --json (the result is one JSON object on stdout).
// Progress goes to stderr, so stdout carries only the result (the capability, or the JSON).
import cliProgress from 'cli-progress';

export type ProgressMode = 'bar' | 'lines' | 'none';

export interface ProgressReporter {
  update(done: number, total: number): void;
  stop(): void;
}

export function progressMode(json: boolean, stream: NodeJS.WriteStream = process.stderr): ProgressMode {
  if (json) return 'none';
  return stream.isTTY ? 'bar' : 'lines';
}

function mib(n: number): string {
  return `${(n / 1048576).toFixed(1)} MiB`;
}

export function progressReporter(label: string, mode: ProgressMode, stream: NodeJS.WriteStream = process.stderr): ProgressReporter {
  if (mode === 'none') return { update() {}, stop() {} };
  if (mode === 'bar') {
    const bar = new cliProgress.SingleBar({
      stream, format: `${label} [{bar}] {percentage}% | {doneMiB} of {totalMiB} | {speed}`, hideCursor: true, clearOnComplete: false,
    }, cliProgress.Presets.shades_classic);
    const t0 = Date.now();
    let started = false;
    return {
      update(done, total) {
        const payload = { doneMiB: mib(done), totalMiB: mib(total), speed: `${(done / 1e6 / Math.max(0.001, (Date.now() - t0) / 1000)).toFixed(1)} MB/s` };
        if (!started) { bar.start(Math.max(1, total), done, payload); started = true; } else bar.update(done, payload);
      },
      stop() { if (started) bar.stop(); },
    };
  }
  let lastTenth = -1;
  return {
    update(done, total) {
      const tenth = total === 0 ? 10 : Math.floor((done / total) * 10);
      if (tenth === lastTenth) return;
      lastTenth = tenth;
      stream.write(`${label}: ${tenth * 10}% (${mib(done)} of ${mib(total)})\n`);
    },
    stop() {},
  };
}
