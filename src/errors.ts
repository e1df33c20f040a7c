// One error type for the whole project, with stable codes from a closed set (SPEC.md §0, §11.1).
// Codes are what tests assert, what metrics count and what operators read in logs; messages are
// for people. Every code is declared once below, in the list of its layer, together with its
// kind; docs/errors.md says what each one means and what to do about it.

/**
 * What sort of failure a code is, whatever its layer:
 * - protocol_violation: the peer sent bytes or messages the protocol does not allow.
 * - integrity: a signature, MAC, AEAD tag or hash did not verify (forged or corrupted data).
 * - expired: a signed document or record is outside its validity window (check the clock).
 * - peer_refused: the peer, or a policy, answered "no" to a well-formed request.
 * - resource_limit: a queue, window, quota or rate limit is full.
 * - timeout: no answer in time.
 * - unreachable: a connection or listener could not be made, or no usable peer/route exists.
 * - not_found: the thing asked for is not there.
 * - closed: the link, circuit, stream or client was closed (often by the user).
 * - bad_input: local input (configuration, command line, files, caller arguments) is wrong.
 * - internal: a bug or an impossible state; please report it.
 */
export const ERROR_KINDS = [
  'protocol_violation', 'integrity', 'expired', 'peer_refused', 'resource_limit', 'timeout',
  'unreachable', 'not_found', 'closed', 'bad_input', 'internal',
] as const;
export type ErrorKind = (typeof ERROR_KINDS)[number];

/** Every error code, per layer, each with its kind. A code is declared in exactly one layer. */
export const ERROR_CODES = {
  /** Fixed-size cells on a link (SPEC.md §2.1). */
  CELL: {
    CELL_MALFORMED: 'protocol_violation',
    CELL_TRUNCATED: 'protocol_violation',
    CELL_UNEXPECTED: 'protocol_violation',
    CELL_UNKNOWN_COMMAND: 'protocol_violation',
  },
  /** Message bodies carried in cells (SPEC.md §2.3–§2.7, §2.8). */
  MSG: {
    MSG_MALFORMED: 'protocol_violation',
    MSG_TRUNCATED: 'protocol_violation',
    MSG_UNSUPPORTED: 'protocol_violation',
  },
  /** Relay cells inside a circuit (SPEC.md §2.5–§2.6, §7b.4). */
  RELAY: {
    RELAY_BAD_STREAM_ID: 'protocol_violation',
    RELAY_EARLY_LIMIT: 'protocol_violation',
    RELAY_MALFORMED: 'protocol_violation',
    RELAY_PROTOCOL: 'protocol_violation',
    RELAY_UNKNOWN_COMMAND: 'protocol_violation',
    RELAY_UNRECOGNIZED: 'protocol_violation',
  },
  /** TLS links between nodes and their handshake (SPEC.md §1, §1.7). */
  LINK: {
    LINK_AUTH_FAILED: 'integrity',
    LINK_CIRCID_EXHAUSTED: 'resource_limit',
    LINK_CLOSED: 'closed',
    LINK_CONNECT_FAILED: 'unreachable',
    LINK_HANDSHAKE_FAILED: 'protocol_violation',
    LINK_HANDSHAKE_TIMEOUT: 'timeout',
    LINK_IDENTITY_MISMATCH: 'integrity',
    LINK_INTERNAL: 'internal',
    LINK_IO: 'unreachable',
    LINK_LISTEN_FAILED: 'unreachable',
    LINK_NOT_OPEN: 'closed',
    LINK_NO_COMMON_VERSION: 'protocol_violation',
    LINK_OUTPUT_OVERFLOW: 'resource_limit',
    LINK_PEER_SILENT: 'timeout',
    LINK_PROTOCOL_VIOLATION: 'protocol_violation',
    LINK_TLS_FAILED: 'unreachable',
  },
  /** Cryptographic primitives (SPEC.md §4.8, §5.7). */
  CRYPTO: {
    CRYPTO_AEAD_FAILED: 'integrity',
    CRYPTO_BAD_LENGTH: 'internal',
    CRYPTO_INTERNAL: 'internal',
    CRYPTO_WIPED: 'closed',
    CRYPTO_ZERO_SHARED_SECRET: 'protocol_violation',
  },
  /** Key files and identity keys (SPEC.md §3). */
  KEY: {
    DATA_DIR_LOCKED: 'resource_limit',
    KEY_BAD_FINGERPRINT: 'bad_input',
    KEY_BAD_MODE: 'bad_input',
    KEY_CERT_INVALID: 'bad_input',
    KEY_CORRUPT: 'bad_input',
    KEY_MALFORMED: 'bad_input',
    KEY_NOT_FOUND: 'not_found',
  },
  /** The ntor circuit handshake (SPEC.md §4). */
  NTOR: {
    NTOR_BAD_AUTH: 'integrity',
    NTOR_MALFORMED: 'protocol_violation',
    NTOR_UNKNOWN_KEY: 'peer_refused',
    NTOR_WRONG_ID: 'protocol_violation',
  },
  /** Circuits: creation, extension, destruction, client building (SPEC.md §7.3, §7b). */
  CIRCUIT: {
    CIRCUIT_BAD_BUILD_TIME: 'internal',
    CIRCUIT_BUILD_FAILED: 'unreachable',
    CIRCUIT_BUILD_TIMEOUT: 'timeout',
    CIRCUIT_CLOSED: 'closed',
    CIRCUIT_DESTROYED: 'closed',
    CIRCUIT_EXTEND_REFUSED: 'peer_refused',
    CIRCUIT_ID_IN_USE: 'protocol_violation',
    CIRCUIT_ID_WRONG_HALF: 'protocol_violation',
    CIRCUIT_MANAGER_CLOSED: 'closed',
    CIRCUIT_NO_CONSENSUS: 'unreachable',
    CIRCUIT_OOM: 'resource_limit',
    CIRCUIT_PROTOCOL: 'protocol_violation',
    CIRCUIT_QUEUE_FULL: 'resource_limit',
    CIRCUIT_TOO_LONG: 'resource_limit',
    CIRCUIT_UNKNOWN: 'protocol_violation',
    CIRCUIT_UNSUPPORTED_HANDSHAKE: 'protocol_violation',
    EXTEND_ADDRESS_MISMATCH: 'peer_refused',
    EXTEND_IDENTITY_UNKNOWN: 'peer_refused',
  },
  /** Client path selection (SPEC.md §7.1). */
  PATH: {
    PATH_NO_EXIT: 'unreachable',
    PATH_NO_GUARD: 'unreachable',
    PATH_NO_MIDDLE: 'unreachable',
    PATH_NO_RELAYS: 'unreachable',
  },
  /** Flow control (SPEC.md §7.4). */
  SENDME: {
    SENDME_BAD_DIGEST: 'integrity',
    SENDME_DIGEST_MISSING: 'protocol_violation',
    SENDME_NOT_DUE: 'internal',
    SENDME_UNEXPECTED: 'protocol_violation',
    SENDME_WINDOW_EXCEEDED: 'protocol_violation',
    SENDME_WINDOW_EXHAUSTED: 'resource_limit',
  },
  /** Streams inside circuits (SPEC.md §7b.6). */
  STREAM: {
    STREAM_ABORTED: 'closed',
    STREAM_CLOSED: 'closed',
    STREAM_CONNRESET: 'unreachable',
    STREAM_FAILED: 'unreachable',
    STREAM_ID_IN_USE: 'protocol_violation',
    STREAM_LIMIT: 'resource_limit',
    STREAM_RATE_LIMIT: 'resource_limit',
    STREAM_NOT_DIRECTORY: 'peer_refused',
    STREAM_PROTOCOL: 'protocol_violation',
    STREAM_REFUSED: 'peer_refused',
    STREAM_TIMEOUT: 'timeout',
  },
  /** Exits and exit policies (SPEC.md §7.6, §7b.6, §7b.7). */
  EXIT: {
    EXIT_CONNECT_REFUSED: 'peer_refused',
    EXIT_NO_ROUTE: 'unreachable',
    EXIT_POLICY_BAD_ADDRESS: 'bad_input',
    EXIT_POLICY_MALFORMED: 'bad_input',
    EXIT_POLICY_REJECTED: 'peer_refused',
    EXIT_RESOLVE_FAILED: 'not_found',
    EXIT_RESOLVE_LIMIT: 'resource_limit',
    EXIT_RESOURCE_LIMIT: 'resource_limit',
    EXIT_TIMEOUT: 'timeout',
  },
  /** The client's SOCKS5 front end (SPEC.md §7.8). */
  SOCKS: {
    SOCKS_ADDRESS_TYPE_UNSUPPORTED: 'bad_input',
    SOCKS_AUTH_MALFORMED: 'bad_input',
    SOCKS_BAD_HOSTNAME: 'bad_input',
    SOCKS_BAD_PORT: 'bad_input',
    SOCKS_BAD_VERSION: 'bad_input',
    SOCKS_CLIENT_GONE: 'closed',
    SOCKS_COMMAND_UNSUPPORTED: 'bad_input',
    SOCKS_CONNECT_TIMEOUT: 'timeout',
    SOCKS_ONION_UNSUPPORTED: 'bad_input',
    SOCKS_PUBLIC_BIND_REFUSED: 'bad_input',
  },
  /** Signed documents: envelopes, certificates (SPEC.md §6.2–§6.3). */
  DOC: {
    DOC_BAD_SIGNATURE: 'integrity',
    DOC_EXPIRED: 'expired',
    DOC_MALFORMED: 'protocol_violation',
    DOC_NOT_YET_VALID: 'expired',
    DOC_PRIVATE_ADDRESS: 'peer_refused',
    DOC_TOO_LARGE: 'resource_limit',
    DOC_WRONG_SIGNER: 'integrity',
    DOC_WRONG_TYPE: 'protocol_violation',
  },
  /** The directory: consensus, votes, fetching and serving them (SPEC.md §6). */
  DIR: {
    CACHE_EMPTY: 'not_found',
    CERT_NOT_AVAILABLE: 'not_found',
    CONSENSUS_EXPIRED: 'expired',
    CONSENSUS_MALFORMED: 'protocol_violation',
    CONSENSUS_NOT_AVAILABLE: 'unreachable',
    CONSENSUS_NOT_YET_VALID: 'expired',
    CONSENSUS_TOO_FEW_SIGNATURES: 'integrity',
    DIR_FETCH_FAILED: 'unreachable',
    DIR_LISTEN_FAILED: 'unreachable',
    DIR_RESPONSE_TOO_LARGE: 'resource_limit',
    DIR_UPLOAD_NOT_HIDDEN: 'peer_refused',
    IDENTITY_POW_ABORTED: 'closed',
    IDENTITY_POW_BUSY: 'resource_limit',
    IDENTITY_POW_INVALID: 'integrity',
    IDENTITY_POW_MISSING: 'peer_refused',
    IDENTITY_POW_STALE: 'expired',
    IDENTITY_POW_WEAK: 'peer_refused',
    SIGNATURES_NOT_AVAILABLE: 'not_found',
    VOTE_MALFORMED: 'protocol_violation',
    VOTE_NOT_AVAILABLE: 'not_found',
    VOTE_UNKNOWN_AUTHORITY: 'peer_refused',
    VOTE_WRONG_PERIOD: 'peer_refused',
  },
  /** JSON error answers of the HTTP endpoints, whatever the route (SPEC.md §6.10). */
  HTTP: {
    HTTP_BAD_REQUEST: 'bad_input',
    HTTP_BAD_HOST: 'peer_refused',
    HTTP_METHOD: 'bad_input',
    NOT_FOUND: 'not_found',
    RATE_LIMITED: 'resource_limit',
  },
  /** Configuration files and command-line options. */
  CONFIG: {
    CONFIG_INVALID: 'bad_input',
  },
  /** Local files. */
  IO: {
    IO_IS_A_DIRECTORY: 'bad_input',
    IO_MODE_UNSUPPORTED: 'bad_input',
    IO_NOT_A_DIRECTORY: 'bad_input',
    IO_NOT_A_FILE: 'bad_input',
    IO_NOT_FOUND: 'bad_input',
    IO_NOT_WRITABLE: 'bad_input',
    IO_OUTPUT_CLOSED: 'closed',
    IO_OUTPUT_EXISTS: 'bad_input',
    IO_STATE_UNREADABLE: 'bad_input',
    IO_STATE_CORRUPT: 'bad_input',
    IO_STATE_LOCKED: 'resource_limit',
  },
  /** Bandwidth receipts: exchange on links and upload to authorities (SPEC.md §8.1–§8.5). */
  RECEIPT: {
    RECEIPT_ANONYMOUS_LINK: 'protocol_violation',
    RECEIPT_BAD_PARAMS: 'bad_input',
    RECEIPT_BAD_SIGNATURE: 'integrity',
    RECEIPT_BUSY: 'resource_limit',
    RECEIPT_CONFLICT: 'peer_refused',
    RECEIPT_COUNT_TOO_LARGE: 'peer_refused',
    RECEIPT_LINK_NOT_COUNTED: 'protocol_violation',
    RECEIPT_MALFORMED: 'protocol_violation',
    RECEIPT_MISMATCH: 'protocol_violation',
    RECEIPT_NOT_SAVED: 'internal',
    RECEIPT_ONE_SIGNATURE: 'peer_refused',
    RECEIPT_OUTSIDE_WINDOW: 'expired',
    RECEIPT_REPLAYED: 'peer_refused',
    RECEIPT_TOO_MANY: 'resource_limit',
    RECEIPT_TOO_MANY_REQUESTS: 'resource_limit',
    RECEIPT_UNKNOWN_EPOCH: 'peer_refused',
    RECEIPT_UNKNOWN_RELAY: 'peer_refused',
    RECEIPT_UPLOAD_TIMEOUT: 'timeout',
    RECEIPT_WRONG_KEY: 'internal',
  },
  /** The capacity probe (SPEC.md §8.12). */
  PROBE: {
    PROBE_BAD_PARAMS: 'bad_input',
    PROBE_REPLY_MALFORMED: 'protocol_violation',
    PROBE_REPLY_MISMATCH: 'integrity',
    PROBE_TIMEOUT: 'timeout',
  },
  /** The reward chain (SPEC.md §8.6–§8.7). */
  REWARD: {
    REWARD_BAD_INPUT: 'bad_input',
    REWARD_BAD_QUERY: 'bad_input',
    REWARD_BAD_SIGNATURE: 'integrity',
    REWARD_BAD_ESCROW: 'protocol_violation',
    REWARD_BAD_TRANSFER: 'protocol_violation',
    REWARD_CHAIN_BAD_EPOCH: 'protocol_violation',
    REWARD_CHAIN_BAD_HEIGHT: 'protocol_violation',
    REWARD_CHAIN_BROKEN_LINK: 'integrity',
    REWARD_CHAIN_ROLLBACK: 'integrity',
    REWARD_FETCH_TIMEOUT: 'timeout',
    REWARD_MALFORMED: 'protocol_violation',
    REWARD_MINT_MISMATCH: 'protocol_violation',
    REWARD_NOT_AVAILABLE: 'not_found',
    REWARD_SUM_MISMATCH: 'protocol_violation',
    REWARD_TOO_FEW_SIGNATURES: 'integrity',
    TRANSFER_BAD_SIGNATURE: 'integrity',
    TRANSFER_MALFORMED: 'bad_input',
    TRANSFER_NOT_INCLUDED: 'timeout',
    TRANSFER_NONCE_GAP: 'peer_refused',
    TRANSFER_OVERSPEND: 'peer_refused',
    TRANSFER_POOL_FULL: 'resource_limit',
    TRANSFER_RATE_LIMITED: 'resource_limit',
    TRANSFER_REPLAYED: 'peer_refused',
    TRANSFER_VERSION_DISABLED: 'peer_refused',
  },
  /** The storage overlay: protocol, shares, chunks, manifests, capabilities, names (SPEC.md §9). */
  STORAGE: {
    AUDIT_ANSWER_MALFORMED: 'protocol_violation',
    AUDIT_PROOF_INVALID: 'integrity',
    AUDIT_REPLAYED: 'integrity',
    AUDIT_REPORT_INVALID: 'integrity',
    CAP_MALFORMED: 'bad_input',
    CHUNK_AUTH_FAILED: 'integrity',
    CHUNK_TOO_FEW_SHARES: 'unreachable',
    CONTRACT_EXPIRED: 'expired',
    CONTRACT_LIMIT: 'resource_limit',
    CONTRACT_MALFORMED: 'bad_input',
    CONTRACT_TOO_EARLY: 'bad_input',
    CONTRACT_TOO_LARGE: 'bad_input',
    ESCROW_ALREADY_FUNDED: 'peer_refused',
    ESCROW_CANCEL_MALFORMED: 'bad_input',
    ESCROW_CANCEL_NOT_INCLUDED: 'timeout',
    ESCROW_CLOSED: 'peer_refused',
    ESCROW_CONTRACT_ENDED: 'peer_refused',
    ESCROW_EPOCH: 'protocol_violation',
    ESCROW_MISMATCH: 'bad_input',
    ESCROW_NOT_ENDED: 'peer_refused',
    ESCROW_NOT_OPENED: 'peer_refused',
    ESCROW_NOT_PAYER: 'integrity',
    ESCROW_PAYMENT_MISMATCH: 'protocol_violation',
    ESCROW_UNDERFUNDED: 'bad_input',
    ESCROW_UNKNOWN: 'not_found',
    FOLDER_MALFORMED: 'protocol_violation',
    FOLDER_NESTED: 'protocol_violation',
    FOLDER_PATH_INVALID: 'bad_input',
    FOLDER_TOO_LARGE: 'resource_limit',
    KEEPER_STATE_CORRUPT: 'integrity',
    KEEPER_STATE_LOCKED: 'resource_limit',
    MANIFEST_MALFORMED: 'protocol_violation',
    MANIFEST_NOT_FOUND: 'not_found',
    NAME_BAD_SIGNATURE: 'integrity',
    NAME_MALFORMED: 'bad_input',
    NAME_MIRROR_FAILED: 'unreachable',
    NAME_NO_MIRRORS: 'unreachable',
    NAME_NOT_FOUND: 'not_found',
    NAME_RECORD_MALFORMED: 'protocol_violation',
    NAME_RECORD_TOO_LARGE: 'resource_limit',
    NAME_SEEN_LOCKED: 'resource_limit',
    NAME_SEQ_ROLLBACK: 'integrity',
    NAME_STORE_FULL: 'resource_limit',
    NAME_VALUE_MALFORMED: 'protocol_violation',
    NAME_WRONG_KEY: 'integrity',
    NAME_WRONG_SALT: 'integrity',
    PLACEMENT_NODE_INVALID: 'protocol_violation',
    PLACEMENT_TOO_FEW_NODES: 'unreachable',
    SHARE_CORRUPT: 'integrity',
    SHARE_HASH_MISMATCH: 'integrity',
    SHARE_NOT_FOUND: 'not_found',
    STORAGE_ABORTED: 'closed',
    STORAGE_BAD_MANIFEST_INPUT: 'bad_input',
    STORAGE_BAD_REQUEST: 'protocol_violation',
    STORAGE_BAD_RESPONSE: 'protocol_violation',
    STORAGE_BUSY: 'resource_limit',
    STORAGE_CHANNEL_CLOSED: 'closed',
    STORAGE_CHUNK_TOO_LARGE: 'bad_input',
    STORAGE_CLIENT_CLOSED: 'closed',
    STORAGE_CODING_INVALID: 'bad_input',
    STORAGE_CONNECT_FAILED: 'unreachable',
    STORAGE_FRAME_MALFORMED: 'protocol_violation',
    STORAGE_FRAME_TOO_LARGE: 'protocol_violation',
    STORAGE_FULL: 'resource_limit',
    STORAGE_IDLE_TIMEOUT: 'closed',
    STORAGE_INTERNAL: 'internal',
    STORAGE_IO_ERROR: 'internal',
    STORAGE_KEY_INVALID: 'bad_input',
    STORAGE_MANIFEST_TOO_LARGE: 'bad_input',
    STORAGE_PUT_FAILED: 'unreachable',
    STORAGE_REMOTE_UNKNOWN: 'protocol_violation',
    VERIFY_RECORD_MALFORMED: 'protocol_violation',
    VERIFY_RECORD_NOT_FOUND: 'not_found',
    STORAGE_TIMEOUT: 'timeout',
  },
  /** The proxy's gateway answering HTTP for `.bitcloud` hosts from storage (SPEC.md §9.16). */
  GATEWAY: {
    GATEWAY_HOST_MALFORMED: 'bad_input',
    GATEWAY_METHOD_NOT_ALLOWED: 'bad_input',
    GATEWAY_NOT_FOUND: 'not_found',
    GATEWAY_PATH_INVALID: 'bad_input',
    GATEWAY_QUEUE_TIMEOUT: 'timeout',
    GATEWAY_RANGE_UNSATISFIABLE: 'bad_input',
  },
  /** The DHT that storage nodes and moderators use (SPEC.md §9.14, §10.7). */
  DHT: {
    DHT_ANNOUNCE_FAILED: 'unreachable',
    DHT_BUSY: 'resource_limit',
    DHT_GET_FAILED: 'unreachable',
    DHT_LISTEN_FAILED: 'unreachable',
    DHT_NO_NODES: 'unreachable',
    DHT_PUT_FAILED: 'unreachable',
    DHT_SEQ_STALE: 'bad_input',
  },
  /** Moderation policies and their enforcement by storage nodes (SPEC.md §10). */
  MODERATION: {
    MODERATOR_KEY_EXISTS: 'bad_input',
    MODERATOR_NO_KEY: 'bad_input',
    NOT_SUBSCRIBED: 'peer_refused',
    POLICY_BAD_CLASS: 'bad_input',
    POLICY_BAD_ID: 'protocol_violation',
    POLICY_BAD_MODERATOR: 'bad_input',
    POLICY_BAD_SIGNATURE: 'integrity',
    POLICY_BAD_TAG: 'bad_input',
    POLICY_CHAIN_BROKEN: 'protocol_violation',
    POLICY_CHAIN_TOO_LONG: 'protocol_violation',
    POLICY_CLASS_NOT_ALLOWED: 'peer_refused',
    POLICY_CONFLICT: 'integrity',
    POLICY_DENIED: 'peer_refused',
    POLICY_EXPIRED: 'expired',
    POLICY_FETCH_FAILED: 'unreachable',
    POLICY_LIST_TOO_LARGE: 'bad_input',
    POLICY_MALFORMED: 'protocol_violation',
    POLICY_NOT_APPROVED: 'peer_refused',
    POLICY_NOT_ENCRYPTED: 'peer_refused',
    POLICY_NOT_FOUND: 'not_found',
    POLICY_NOT_PUBLIC: 'bad_input',
    POLICY_NOT_YET_VALID: 'expired',
    POLICY_REPLAYED: 'peer_refused',
    POLICY_SAVED_DIFFERS: 'bad_input',
    POLICY_STORE_FULL: 'resource_limit',
    POLICY_TOO_LARGE: 'peer_refused',
    POLICY_TOO_LARGE_FOR_DHT: 'bad_input',
    POLICY_UNAVAILABLE: 'unreachable',
    POLICY_UPLOAD_REFUSED: 'peer_refused',
    POLICY_WRONG_MODERATOR: 'integrity',
    UNMODERATED_CIRCUIT_ONLY: 'peer_refused',
    UNMODERATED_ENCRYPTED_ONLY: 'peer_refused',
  },
  /** Hidden storage nodes: blinded keys, descriptors, introduction and rendezvous (SPEC.md §9.21). */
  HIDDEN: {
    HIDDEN_BLIND_INVALID: 'integrity',
    HIDDEN_COOKIE_REUSED: 'peer_refused',
    HIDDEN_COOKIE_UNKNOWN: 'protocol_violation',
    HIDDEN_DESC_BAD_SIGNATURE: 'integrity',
    HIDDEN_DESC_EXPIRED: 'expired',
    HIDDEN_DESC_MALFORMED: 'protocol_violation',
    HIDDEN_DESC_NOT_FOUND: 'not_found',
    HIDDEN_DESC_STALE: 'peer_refused',
    HIDDEN_DESC_UPLOAD_FAILED: 'unreachable',
    HIDDEN_DESC_WRONG_KEY: 'integrity',
    HIDDEN_DESC_WRONG_PERIOD: 'integrity',
    HIDDEN_ESTABLISH_INVALID: 'protocol_violation',
    HIDDEN_INTRO_FORGED: 'integrity',
    HIDDEN_INTRO_REFUSED: 'peer_refused',
    HIDDEN_INTRO_REPLAY: 'integrity',
    HIDDEN_NO_INTRO: 'unreachable',
    HIDDEN_ONE_HOP: 'protocol_violation',
    HIDDEN_PSEUDONYM_BAD_SIGNATURE: 'integrity',
    HIDDEN_PSEUDONYM_MALFORMED: 'protocol_violation',
    HIDDEN_PSEUDONYM_NOT_SAVED: 'internal',
    HIDDEN_PSEUDONYM_STALE: 'expired',
    HIDDEN_PSEUDONYM_TAKEN: 'peer_refused',
    HIDDEN_PSEUDONYM_TOO_MANY: 'resource_limit',
    HIDDEN_PSEUDONYM_UNKNOWN_NODE: 'peer_refused',
    HIDDEN_PSEUDONYM_UNSEALED: 'integrity',
    HIDDEN_RELAY_LIMIT: 'resource_limit',
    HIDDEN_RENDEZVOUS_LIMIT: 'resource_limit',
    HIDDEN_RENDEZVOUS_TIMEOUT: 'timeout',
    HIDDEN_RP_UNKNOWN: 'peer_refused',
    HIDDEN_UPLOAD_UNCONFIRMED: 'integrity',
  },
  /** Not tied to a layer. */
  GENERAL: {
    INTERNAL: 'internal',
  },
} as const satisfies Record<string, Record<string, ErrorKind>>;

export type ErrorLayer = keyof typeof ERROR_CODES;
/** The closed set of error codes. `err()` takes nothing else. */
export type ErrorCode = { [L in ErrorLayer]: keyof (typeof ERROR_CODES)[L] }[ErrorLayer];

const INFO = new Map<string, { layer: ErrorLayer; kind: ErrorKind }>();
for (const [layer, codes] of Object.entries(ERROR_CODES) as [ErrorLayer, Record<string, ErrorKind>][]) {
  for (const [code, kind] of Object.entries(codes)) {
    if (INFO.has(code)) throw new Error(`error code ${code} is declared twice`);
    INFO.set(code, { layer, kind });
  }
}

/** Every declared code, layer by layer. */
export const ALL_ERROR_CODES: readonly ErrorCode[] = [...INFO.keys()] as ErrorCode[];

/** Whether a string (from the wire, a file, another error) is one of the declared codes. */
export function isErrorCode(s: unknown): s is ErrorCode {
  return typeof s === 'string' && INFO.has(s);
}

/** The kind of a code. */
export function kindOf(code: ErrorCode): ErrorKind {
  return INFO.get(code)!.kind;
}

/** The layer a code is declared in. */
export function layerOf(code: ErrorCode): ErrorLayer {
  return INFO.get(code)!.layer;
}

export class BitcloudError extends Error {
  readonly code: ErrorCode;
  readonly detail?: Record<string, unknown>;
  constructor(code: ErrorCode, message: string, detail?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(`${code}: ${message}`, options);
    this.name = 'BitcloudError';
    this.code = code;
    this.detail = detail;
  }
}

/** Make an error with a declared code. */
export function err(code: ErrorCode, message: string, detail?: Record<string, unknown>, cause?: unknown): BitcloudError {
  return new BitcloudError(code, message, detail, cause === undefined ? undefined : { cause });
}

export function isBitcloudError(e: unknown, code?: ErrorCode): e is BitcloudError {
  return e instanceof BitcloudError && (code === undefined || e.code === code);
}

/**
 * The code of any thrown value, for metrics labels and logs: a declared code for a BitcloudError,
 * else the value's own string `code` (a Node errno such as ECONNREFUSED), else INTERNAL.
 */
export function errorCode(e: unknown): string {
  if (e instanceof BitcloudError) return e.code;
  const c = (e as { code?: unknown })?.code;
  return typeof c === 'string' ? c : 'INTERNAL';
}

/** The declared code of a thrown value: its own for a BitcloudError, else INTERNAL. */
export function declaredCode(e: unknown): ErrorCode {
  return e instanceof BitcloudError ? e.code : 'INTERNAL';
}
