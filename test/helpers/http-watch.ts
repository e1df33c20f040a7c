// Requests made through node:http, counted as they are started (http.request is called), before
// anything reaches the network: a test knows what a queue has dispatched in the turn it did so,
// and can then wait for the server to have received exactly that many. Undone by restore() or
// vi.restoreAllMocks().
import http from 'node:http';
import { vi } from 'vitest';

export interface RequestWatch {
  /** Requests started so far whose URL and method `match` took. */
  readonly started: number;
  restore(): void;
}

export function watchRequests(match: (url: string, method: string) => boolean): RequestWatch {
  let started = 0;
  const real = http.request.bind(http) as (...args: unknown[]) => http.ClientRequest;
  const spy = vi.spyOn(http, 'request').mockImplementation(((...args: unknown[]) => {
    const opts = args.find((a): a is http.RequestOptions => typeof a === 'object' && a !== null && !(a instanceof URL));
    if (match(String(args[0]), (opts?.method ?? 'GET').toUpperCase())) started++;
    return real(...args);
  }) as typeof http.request);
  return { get started() { return started; }, restore: () => { spy.mockRestore(); } };
}
