// The part of sodium-native (v5) that src/crypto uses. Only src/crypto imports it.
declare module 'sodium-native' {
  type B = Buffer;
  const sodium: {
    randombytes_buf(b: B): void;
    sodium_memcmp(a: B, b: B): boolean;
    sodium_is_zero(b: B, len?: number): boolean;
    crypto_sign_keypair(pk: B, sk: B): void;
    crypto_sign_seed_keypair(pk: B, sk: B, seed: B): void;
    crypto_sign_detached(sig: B, msg: B, sk: B): void;
    crypto_sign_verify_detached(sig: B, msg: B, pk: B): boolean;
    crypto_sign_ed25519_pk_to_curve25519(out: B, pk: B): void;
    crypto_sign_ed25519_sk_to_curve25519(out: B, sk: B): void;
    crypto_scalarmult(out: B, sk: B, pk: B): void;
    // Sealed boxes (SPEC.md §9.21.7 pseudonym registrations)
    crypto_box_SEALBYTES: number;
    crypto_box_seal(c: B, m: B, pk: B): void;
    crypto_box_seal_open(m: B, c: B, pk: B, sk: B): boolean;
    // Key blinding (SPEC.md §9.21.2)
    crypto_core_ed25519_scalar_reduce(out: B, wide: B): void;
    crypto_core_ed25519_scalar_add(out: B, a: B, b: B): void;
    crypto_core_ed25519_add(out: B, p: B, q: B): void;
    crypto_core_ed25519_is_valid_point(p: B): boolean;
    crypto_scalarmult_ed25519_base_noclamp(out: B, n: B): void;
    extension_tweak_ed25519_sk_to_scalar(out: B, sk: B): void;
    extension_tweak_ed25519_sign_detached(sig: B, msg: B, scalar: B, pk?: B): void;
    crypto_scalarmult_base(out: B, sk: B): void;
    crypto_generichash(out: B, input: B, key?: B | null): void;
    crypto_generichash_batch(out: B, inputs: B[], key?: B | null): void;
    crypto_generichash_STATEBYTES: number;
    crypto_generichash_init(state: B, key: B | null, outLen: number): void;
    crypto_generichash_update(state: B, input: Uint8Array): void;
    crypto_generichash_final(state: B, out: Uint8Array): void;
    crypto_aead_xchacha20poly1305_ietf_encrypt(c: B, m: B, ad: B | null, nsec: null, npub: B, k: B): number;
    crypto_aead_xchacha20poly1305_ietf_decrypt(m: B, nsec: null, c: B, ad: B | null, npub: B, k: B): number;
    crypto_stream_xor(c: B, m: B, n: B, k: B): void;
    // argon2id (SPEC.md §6.4.1)
    crypto_pwhash_SALTBYTES: number;
    crypto_pwhash_BYTES_MIN: number;
    crypto_pwhash_OPSLIMIT_MIN: number;
    crypto_pwhash_MEMLIMIT_MIN: number;
    crypto_pwhash_ALG_ARGON2ID13: number;
    crypto_pwhash_async(out: Uint8Array, passwd: Uint8Array, salt: Uint8Array, opslimit: number, memlimit: number, alg: number,
      callback: (error: Error | null) => void): void;
    [name: string]: unknown;
  };
  export default sodium;
}
