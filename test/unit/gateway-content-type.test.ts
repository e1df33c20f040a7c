// SPEC.md §9.16.2: the Content-Type of a served file comes from a fixed table of extensions; a name
// whose extension is a property every object inherits is not in that table.
import { describe, expect, it } from 'vitest';
import { contentTypeFor } from '../../src/client/gateway/content-type';

describe('contentTypeFor (SPEC.md §9.16.2)', () => {
  it('an extension named like an inherited property ("constructor", "__proto__", "toString") is not in the table', () => {
    for (const ext of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf', '__defineGetter__']) {
      expect(contentTypeFor(`x.${ext}`), ext).toBe('application/octet-stream');
      expect(contentTypeFor(`x.${ext.toUpperCase()}`), ext).toBe('application/octet-stream');
      expect(contentTypeFor(`x.${ext}`, 'text/plain'), ext).toBe('text/plain'); // the manifest's plain type, as for any unknown extension
    }
  });

  it('the table still answers for its own extensions', () => {
    expect(contentTypeFor('a/index.html')).toBe('text/html; charset=utf-8');
    expect(contentTypeFor('v.WEBM')).toBe('video/webm');
    expect(contentTypeFor('noext', 'text/plain')).toBe('text/plain');
  });
});
