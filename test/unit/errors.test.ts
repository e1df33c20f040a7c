import { describe, it, expect } from 'vitest';
import { err, errorCode, isBitcloudError } from '../../src/errors';

describe('errors', () => {
  it('carry a stable code', () => {
    const e = err('CELL_MALFORMED', 'bad');
    expect(isBitcloudError(e, 'CELL_MALFORMED')).toBe(true);
    expect(errorCode(e)).toBe('CELL_MALFORMED');
    expect(errorCode(new Error('x'))).toBe('INTERNAL');
  });
});
