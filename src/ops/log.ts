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

/**
 * A time in ms as ISO 8601 for a message or a log line, for any number: one a Date cannot hold
 * (beyond ±8.64e15 ms, NaN, ±Infinity: a hostile document's or peer's) is printed as
 * `<invalid time N>` where `new Date(N).toISOString()` would throw RangeError.
 */
export function isoTime(ms: number): string {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? `<invalid time ${ms}>` : d.toISOString();
}
