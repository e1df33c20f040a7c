// Structured JSON logs (pino). Never log a client IP or a circuit's path at info level
// (DEVELOPERS non-negotiable 6); such details go at debug at most.
import pino from 'pino';

export type Logger = pino.Logger;

export function createLogger(name: string, opts: { level?: string; destination?: string } = {}): Logger {
  const level = opts.level ?? process.env.BITCLOUD_LOG_LEVEL ?? 'info';
  const dest = opts.destination ? pino.destination({ dest: opts.destination, sync: false, mkdir: true }) : pino.destination(2);
  return pino({ name, level, base: { name, pid: process.pid } }, dest);
}

/** A logger that discards everything (for unit tests and library use). */
export const silentLogger: Logger = pino({ level: 'silent' });
