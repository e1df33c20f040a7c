// Links (SPEC.md §1): authenticated TLS 1.3 channels carrying fixed 514-byte cells.
export { Channel, type LinkTuning, DEFAULT_BATCH_CELLS, DEFAULT_HIGH_WATER_MARK, DEFAULT_MAX_BUFFERED_BYTES, DEFAULT_HANDSHAKE_TIMEOUT_MS } from './channel';
export type { CellChannel, CellChannelEvents } from './cell-channel';
export { connectLink, defaultInitiatorCredentials, type ConnectLinkOptions } from './connect';
export { createLinkListener, LinkListener, type LinkAdmission, type LinkListenerOptions } from './listener';
export { createLinkMetrics, discardLinkMetrics, counterValue, type LinkMetrics, type LinkRole } from './metrics';
export { SUPPORTED_LINK_VERSIONS, AuthRole, negotiateVersion } from './handshake';
export { CircIdAllocator } from './circ-ids';
