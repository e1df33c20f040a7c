// SPEC.md §7.8.4: the SOCKS5 reply codes (RFC 1928 §6). Declared here, beside the other wire
// codes, because two layers name them: the SOCKS front end (src/client/socks5.ts) sends them, and
// the reason tables of src/circuit/end-reasons.ts map END reasons and system errors to them.

/** RFC 1928 §6 reply codes. */
export const SocksReply = {
  SUCCEEDED: 0x00, GENERAL_FAILURE: 0x01, NOT_ALLOWED: 0x02, NETWORK_UNREACHABLE: 0x03, HOST_UNREACHABLE: 0x04,
  CONNECTION_REFUSED: 0x05, TTL_EXPIRED: 0x06, COMMAND_NOT_SUPPORTED: 0x07, ADDRESS_TYPE_NOT_SUPPORTED: 0x08,
} as const;

export type SocksReplyName = keyof typeof SocksReply;
