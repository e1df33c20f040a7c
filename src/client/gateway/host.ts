// SPEC.md §9.16.1: a capability as a host name. Its two 52-character base32 parts each fit a DNS
// label (at most 63 characters), so the host is `<file key>.<manifest id>.bitcloud`. Hosts are
// case-insensitive: the host is lowercased, then parsed as strictly as a capability (§9.5).
import { err } from '../../errors';
import { base32Decode, base32Encode, type Capability } from '../../storage/capability';

export const BITCLOUD_TLD = '.bitcloud';

/**
 * Whether a SOCKS host name is one the gateway answers (any host ending in ".bitcloud", with any
 * number of trailing dots: SPEC.md §7.8.3, such a name never goes to an exit, even one the SOCKS
 * layer's empty-label rule, §7.8.2, did not refuse).
 */
export function isBitcloudHost(host: string): boolean {
  return host.toLowerCase().replace(/\.+$/, '').endsWith(BITCLOUD_TLD);
}

export function capabilityHost(cap: Capability): string {
  return `${base32Encode(cap.fileKey)}.${base32Encode(cap.manifestId)}${BITCLOUD_TLD}`;
}

/** The URL a browser opens (through the SOCKS proxy) for a capability. */
export function capabilityUrl(cap: Capability): string {
  return `http://${capabilityHost(cap)}/`;
}

/** Parse `<file key>.<manifest id>.bitcloud` (one trailing dot allowed); else GATEWAY_HOST_MALFORMED. */
export function parseCapabilityHost(host: string): Capability {
  const h = host.toLowerCase().replace(/\.$/, '');
  if (!h.endsWith(BITCLOUD_TLD)) throw err('GATEWAY_HOST_MALFORMED', 'not a .bitcloud host');
  const labels = h.slice(0, -BITCLOUD_TLD.length).split('.');
  if (labels.length !== 2 || labels.some((l) => l.length !== 52)) {
    throw err('GATEWAY_HOST_MALFORMED', 'a .bitcloud host is <file key>.<manifest id>.bitcloud, two labels of 52 base32 characters');
  }
  try {
    const fileKey = base32Decode(labels[0], 'GATEWAY_HOST_MALFORMED');
    const manifestId = base32Decode(labels[1], 'GATEWAY_HOST_MALFORMED');
    if (fileKey.length !== 32 || manifestId.length !== 32) throw err('GATEWAY_HOST_MALFORMED', 'each label must be 32 bytes of base32');
    return { fileKey, manifestId };
  } catch (e) {
    throw err('GATEWAY_HOST_MALFORMED', 'a .bitcloud host label is not valid base32 (lowercase a-z, 2-7, zero trailing bits)', undefined, e);
  }
}
