// One error type for the whole project, with stable codes (SPEC.md §0, §11.1).
// Codes are what tests assert and what metrics count; messages are for people.

export type ErrorLayer =
  | 'CELL' | 'RELAY' | 'LINK' | 'CRYPTO' | 'KEY' | 'NTOR' | 'CIRCUIT' | 'STREAM'
  | 'DOC' | 'CONSENSUS' | 'DIR' | 'CONFIG' | 'SOCKS' | 'EXIT' | 'RECEIPT' | 'REWARD'
  | 'STORAGE' | 'SHARE' | 'MANIFEST' | 'CAP' | 'DHT' | 'POLICY' | 'IO';

export class BitcloudError extends Error {
  readonly code: string;
  readonly detail?: Record<string, unknown>;
  constructor(code: string, message: string, detail?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(`${code}: ${message}`, options);
    this.name = 'BitcloudError';
    this.code = code;
    this.detail = detail;
  }
}

/** Make an error with a stable code. Prefer the named factories of each layer. */
export function err(code: string, message: string, detail?: Record<string, unknown>, cause?: unknown): BitcloudError {
  return new BitcloudError(code, message, detail, cause === undefined ? undefined : { cause });
}

export function isBitcloudError(e: unknown, code?: string): e is BitcloudError {
  return e instanceof BitcloudError && (code === undefined || e.code === code);
}

/** The code of any thrown value, for metrics labels. */
export function errorCode(e: unknown): string {
  if (e instanceof BitcloudError) return e.code;
  const c = (e as { code?: unknown })?.code;
  return typeof c === 'string' ? c : 'INTERNAL';
}
