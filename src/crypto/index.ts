// The named operations of src/crypto that the rest of Bitcloud uses (SPEC.md §11.4). Primitives
// are imported from './primitives' directly; tor1 is reached only through relay-crypto.
export * from './keys';
export * from './ntor';
export * from './hop-crypto';
export * from './relay-crypto';
