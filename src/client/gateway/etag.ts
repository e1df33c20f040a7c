// SPEC.md §9.16.3: If-None-Match (RFC 9110 §13.1.2). The header is `*` or a comma-separated list of
// entity tags, each `"opaque"` or `W/"opaque"`; it matches when it is `*` or one of its tags
// matches by the weak comparison (RFC 9110 §8.8.3.2: the opaque parts are equal, `W/` aside).
// A header that does not parse is ignored (no match), so a malformed one never yields a 304.

/** OWS (RFC 9110 §5.6.3): spaces and tabs. */
function skipOws(h: string, i: number): number {
  while (i < h.length && (h.charCodeAt(i) === 0x20 || h.charCodeAt(i) === 0x09)) i++;
  return i;
}

/** etagc (RFC 9110 §8.8.3): %x21 / %x23-7E / obs-text. */
function isEtagc(c: number): boolean {
  return c === 0x21 || (c >= 0x23 && c <= 0x7e) || (c >= 0x80 && c <= 0xff);
}

/**
 * Whether `header` (an If-None-Match value) matches `etag` (the gateway's own strong tag,
 * `"…"`). One pass, linear in the header's length; empty list elements are skipped (RFC 9110 §5.6.1.2).
 */
export function ifNoneMatchMatches(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  let i = skipOws(header, 0);
  let end = header.length;
  while (end > i && (header.charCodeAt(end - 1) === 0x20 || header.charCodeAt(end - 1) === 0x09)) end--;
  const h = header.slice(i, end);
  if (h === '*') return true;
  i = 0;
  let tags = 0, found = false;
  for (;;) {
    i = skipOws(h, i);
    if (i >= h.length) break;
    if (h.charCodeAt(i) === 0x2c) { i++; continue; } // an empty element
    if (h.startsWith('W/', i)) i += 2;
    if (h.charCodeAt(i) !== 0x22) return false;
    const open = i++;
    while (i < h.length && h.charCodeAt(i) !== 0x22) {
      if (!isEtagc(h.charCodeAt(i))) return false;
      i++;
    }
    if (i >= h.length) return false; // no closing quote
    i++;
    tags++;
    if (!found && h.slice(open, i) === etag) found = true;
    i = skipOws(h, i);
    if (i < h.length && h.charCodeAt(i) !== 0x2c) return false;
  }
  return tags > 0 && found;
}
