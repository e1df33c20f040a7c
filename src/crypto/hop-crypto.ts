// SPEC.md §5: the interface of relay cryptography, one hop of one circuit at a time. Its owner is
// this module, so that an algorithm (tor1.ts, cgo.ts) implements it without importing the
// factories of relay-crypto.ts that choose the algorithm.
//
// Every method works IN PLACE on the 509-byte relay payload of a RELAY / RELAY_EARLY cell (a
// view into the cell buffer). They run once per cell per hop: the hot path. `cmd` is the cell
// command (RELAY or RELAY_EARLY): CGO authenticates it (SPEC.md §5.6), tor1 ignores it.
// originate() is always followed by the same hop's encryptOutbound / encryptInbound.

/** The client's state for one hop of one circuit (both directions). */
export interface ClientHopCrypto {
  /** Set the integrity fields (recognized, digest) of a payload this client sends to this hop. */
  originate(payload: Buffer): void;
  /** Add this hop's layer to an outbound payload (the client applies the layers last hop first). */
  encryptOutbound(payload: Buffer, cmd?: number): void;
  /** Optional batch form (tor1): encryptOutbound over many RELAY payloads laid end to end, in one cipher call. */
  encryptOutboundMany?(payloads: Buffer): void;
  /** Remove this hop's layer from an inbound payload; true when this hop sent it (recognized). */
  decryptInbound(payload: Buffer, cmd?: number): boolean;
  /**
   * Optional batch form (tor1): decryptInbound is exactly cryptInboundMany over the payload and
   * then recognizeInbound. cryptInboundMany removes this hop's layer from the payloads of many
   * RELAY cells laid end to end (509 bytes each, in arrival order) in one cipher call;
   * recognizeInbound then tells, cell by cell in the same order, whether this hop sent it.
   */
  cryptInboundMany?(payloads: Buffer): void;
  recognizeInbound?(payload: Buffer): boolean;
  /** The full running digest after the most recent originated or recognized cell (SENDME v1). */
  lastDigest(): Buffer;
  /** The most data one relay message carries with this crypto (SPEC.md §2.5, §5.6.3). */
  readonly relayDataMax: number;
  /**
   * SPEC.md §5.6.2: the circuit is freed. Erase this hop's key material (key copies, POLYVAL
   * tables, cipher contexts, unused keystream) at once; a second call does nothing. Every other
   * method throws CRYPTO_WIPED afterwards.
   */
  wipe(): void;
}

/** A relay's state for its own hop of one circuit (both directions). */
export interface RelayHopCrypto {
  /** Remove this hop's layer from an outbound payload; true when the cell is for this hop. */
  decryptOutbound(payload: Buffer, cmd?: number): boolean;
  /**
   * Optional batch forms (tor1), for the payloads of many cells of this circuit laid end to end
   * (509 bytes each, in arrival order): decryptOutbound is exactly cryptOutboundMany over the
   * payload and then recognizeOutbound; encryptInboundMany is encryptInbound over each.
   */
  cryptOutboundMany?(payloads: Buffer): void;
  recognizeOutbound?(payload: Buffer): boolean;
  encryptInboundMany?(payloads: Buffer): void;
  /** Set the integrity fields of a payload this relay sends back toward the client. */
  originate(payload: Buffer): void;
  /** Add this hop's layer to an inbound payload (originated here or passing through). */
  encryptInbound(payload: Buffer, cmd?: number): void;
  /** The full running digest after the most recent originated or recognized cell (SENDME v1). */
  lastDigest(): Buffer;
  /** The most data one relay message carries with this crypto (SPEC.md §2.5, §5.6.3). */
  readonly relayDataMax: number;
  /**
   * SPEC.md §5.6.2: the circuit is freed. Erase this hop's key material (key copies, POLYVAL
   * tables, cipher contexts, unused keystream) at once; a second call does nothing. Every other
   * method throws CRYPTO_WIPED afterwards.
   */
  wipe(): void;
}

/** The relay crypto a circuit negotiated (SPEC.md §5.6): chosen once, at circuit creation. */
export type RelayCryptoAlgorithm = 'tor1' | 'cgo';
