// What a command prints: stdout (or stderr) taken while a function runs, and always given back.
import { vi } from 'vitest';

export interface Captured<T> {
  /** What the function returned (awaited). */
  result: T;
  /** Each write, in order. */
  writes: string[];
  /** All of it, joined. */
  text: string;
}

/** Run `fn` with `stream`'s writes collected instead of printed; the stream is restored even if `fn` throws. */
export async function captureOutput<T>(stream: NodeJS.WriteStream, fn: () => T | Promise<T>): Promise<Captured<T>> {
  const writes: string[] = [];
  const spy = vi.spyOn(stream, 'write').mockImplementation((x: string | Uint8Array) => { writes.push(String(x)); return true; });
  try {
    const result = await fn();
    return { result, writes, text: writes.join('') };
  } finally { spy.mockRestore(); }
}

/** captureOutput on stdout. */
export function captureStdout<T>(fn: () => T | Promise<T>): Promise<Captured<T>> {
  return captureOutput(process.stdout, fn);
}
