// SPEC.md §9.10: a storage command's exit status is 2 for CAP_MALFORMED, NAME_MALFORMED,
// CONFIG_INVALID, STORAGE_CODING_INVALID and every IO_* code (the request itself is wrong), 1 for
// every other failure.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ALL_ERROR_CODES, ERROR_CODES, err, layerOf } from '../../src/errors';
import { reportFailure } from '../../src/client/storage-client-setup';

afterEach(() => { vi.restoreAllMocks(); });

/** The exit status reportFailure gives a failure with `code`, its JSON document kept off stdout. */
function statusOf(code: (typeof ALL_ERROR_CODES)[number]): number {
  const write = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  try {
    return reportFailure('get', err(code, 'test'), true);
  } finally {
    write.mockRestore();
  }
}

describe('exit status of a failed command (SPEC.md §9.10)', () => {
  it('IO_NOT_A_DIRECTORY exits with 2, as every IO_* code does', () => {
    expect(statusOf('IO_NOT_A_DIRECTORY')).toBe(2);
    for (const code of Object.keys(ERROR_CODES.IO) as (keyof typeof ERROR_CODES.IO)[]) expect([code, statusOf(code)]).toEqual([code, 2]);
  });

  it('2 for exactly the codes SPEC.md §9.10 names and the IO layer; 1 for every other code', () => {
    const usage = new Set(['CAP_MALFORMED', 'NAME_MALFORMED', 'CONFIG_INVALID', 'STORAGE_CODING_INVALID']);
    for (const code of ALL_ERROR_CODES) {
      const want = usage.has(code) || layerOf(code) === 'IO' ? 2 : 1;
      expect([code, statusOf(code)]).toEqual([code, want]);
    }
    // A failure that is not a BitcloudError is INTERNAL: 1.
    const write = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    expect(reportFailure('get', new Error('boom'), true)).toBe(1);
    write.mockRestore();
  });
});
