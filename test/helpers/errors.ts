// Shared by the codec tests: what a decoder threw, that it threw a given code, and "only typed
// errors" for property tests.
import { expect } from 'vitest';
import { BitcloudError, isBitcloudError, type ErrorCode } from '../../src/errors';

/** The BitcloudError code `f` throws, or undefined when it returns; any other throw propagates. */
export function codeOf(f: () => unknown): ErrorCode | undefined {
  try {
    f();
  } catch (e) {
    if (e instanceof BitcloudError) return e.code;
    throw e;
  }
  return undefined;
}

/** True when `f` returns or throws a BitcloudError; any other throw fails the property. */
export function onlyBitcloudErrors(f: () => unknown): boolean {
  try {
    f();
  } catch (e) {
    if (!(e instanceof BitcloudError)) throw e;
  }
  return true;
}

/** Fails the test unless `f` throws a BitcloudError with `code`. */
export function expectCode(f: () => unknown, code: ErrorCode): void {
  try {
    f();
  } catch (e) {
    expect(isBitcloudError(e, code), String(e)).toBe(true);
    return;
  }
  throw new Error(`expected ${code}`);
}
