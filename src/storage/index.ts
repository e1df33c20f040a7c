// The storage overlay's shared pieces (SPEC.md §9), for the client (put/get) and the storage node.
// gf256 and erasure are reached through encode; proto through manifest and protocol.
export * from './share';
export * from './coding';
export * from './encode';
export * from './manifest';
export * from './seal';
export * from './file-encoder';
export * from './capability';
export * from './placement';
export * from './framing';
export * from './protocol';
export * from './channel';
