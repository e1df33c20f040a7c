// Link specifiers (SPEC.md §2.7.4, tor-spec 5.1.2): how an EXTEND2 names the next hop.
//   lstype u8 | lslen u8 | lspec [lslen]
// Known types have a fixed length; unknown types (including Tor's legacy RSA id, type 2,
// which Bitcloud does not use) are kept opaque so that a newer sender does not break us.
import { err } from '../errors';
import { Reader, Writer } from './bytes';
import { IPV4_LEN, IPV6_LEN, formatIPv4, formatIPv6, parseIPv4, parseIPv6 } from './addr';

export const LinkSpecType = {
  IPV4: 0,
  IPV6: 1,
  /** Tor's RSA identity digest; never sent by Bitcloud, decoded as 'unknown'. */
  LEGACY_ID: 2,
  ED25519: 3,
} as const;

export const ED25519_ID_LEN = 32;

export type LinkSpecifier =
  | { type: 'ipv4'; addr: string; port: number }
  | { type: 'ipv6'; addr: string; port: number }
  | { type: 'ed25519'; id: Buffer }
  | { type: 'unknown'; lstype: number; data: Buffer };

const WHAT = 'link specifier';

function bad(message: string): never {
  throw err('MSG_MALFORMED', `${WHAT}: ${message}`, { message: WHAT });
}

function checkPort(port: unknown): asserts port is number {
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 0xffff) bad(`port must be 1..65535, got ${String(port)}`);
}

export function writeLinkSpecifier(w: Writer, ls: LinkSpecifier): void {
  switch (ls.type) {
    case 'ipv4': {
      const a = parseIPv4(ls.addr) ?? bad(`not an IPv4 address: ${ls.addr}`);
      checkPort(ls.port);
      w.u8(LinkSpecType.IPV4, 'lstype').u8(IPV4_LEN + 2, 'lslen').bytes(a).u16(ls.port, 'port');
      return;
    }
    case 'ipv6': {
      const a = parseIPv6(ls.addr) ?? bad(`not an IPv6 address: ${ls.addr}`);
      checkPort(ls.port);
      w.u8(LinkSpecType.IPV6, 'lstype').u8(IPV6_LEN + 2, 'lslen').bytes(a).u16(ls.port, 'port');
      return;
    }
    case 'ed25519':
      if (!(ls.id instanceof Uint8Array) || ls.id.length !== ED25519_ID_LEN) bad(`Ed25519 id must be ${ED25519_ID_LEN} bytes`);
      w.u8(LinkSpecType.ED25519, 'lstype').u8(ED25519_ID_LEN, 'lslen').bytes(ls.id);
      return;
    case 'unknown':
      if (ls.lstype === LinkSpecType.IPV4 || ls.lstype === LinkSpecType.IPV6 || ls.lstype === LinkSpecType.ED25519) {
        bad(`type ${ls.lstype} must be given in its typed form`);
      }
      if (!(ls.data instanceof Uint8Array)) bad('data must be bytes');
      w.u8(ls.lstype, 'lstype').u8(ls.data.length, 'lslen').bytes(ls.data);
      return;
    default:
      bad(`unknown specifier kind ${String((ls as { type?: unknown }).type)}`);
  }
}

export function readLinkSpecifier(r: Reader): LinkSpecifier {
  const lstype = r.u8('lstype');
  const lslen = r.u8('lslen');
  const body = new Reader(r.view(lslen, 'lspec'), WHAT);
  const expect = (n: number) => {
    if (lslen !== n) bad(`type ${lstype} must be ${n} bytes, got ${lslen}`);
  };
  switch (lstype) {
    case LinkSpecType.IPV4: {
      expect(IPV4_LEN + 2);
      const addr = formatIPv4(body.view(IPV4_LEN, 'addr'));
      const port = body.u16('port');
      if (port === 0) bad('port 0');
      return { type: 'ipv4', addr, port };
    }
    case LinkSpecType.IPV6: {
      expect(IPV6_LEN + 2);
      const addr = formatIPv6(body.view(IPV6_LEN, 'addr'));
      const port = body.u16('port');
      if (port === 0) bad('port 0');
      return { type: 'ipv6', addr, port };
    }
    case LinkSpecType.ED25519:
      expect(ED25519_ID_LEN);
      return { type: 'ed25519', id: body.bytes(ED25519_ID_LEN, 'id') };
    default:
      return { type: 'unknown', lstype, data: body.bytes(lslen, 'data') };
  }
}
