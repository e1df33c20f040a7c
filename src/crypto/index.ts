// The named operations of src/crypto that the rest of Bitcloud uses (STYLE.md §7). Primitives
// are imported from './primitives' directly; tor1 is reached only through relay-crypto.
export * from './keys';
export * from './ntor';
export * from './hop-crypto';
export * from './relay-crypto';
