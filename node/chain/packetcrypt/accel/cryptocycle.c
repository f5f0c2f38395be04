/* expand() and the CryptoCycle ChaCha20-Poly1305 step, over libsodium primitives. */
#include <sodium.h>
#include "pk_internal.h"

void pk_expand(uint8_t *out, uint32_t len, const uint8_t *seed32, uint32_t num)
{
    uint8_t nonce[12];
    pk_st32(nonce, num);
    memcpy(nonce + 4, "PC_EXPND", 8);
    crypto_stream_chacha20_ietf(out, len, nonce, seed32);
}

void pk_cc_make_fuzzable(uint8_t *s)
{
    memcpy(s + 12, s + 16, 4);
    uint32_t d = pk_ld32(s + 12) & 0x00FFFFFFu;   /* version and failed cleared */
    d |= 32u << 17;                                /* len |= 32 */
    pk_st32(s + 12, d);
}

void pk_cc_init(uint8_t *s, const uint8_t *seed32, uint64_t nonce)
{
    pk_expand(s, 2048, seed32, 0);
    pk_st64(s, nonce);
    pk_cc_make_fuzzable(s);
}

void pk_cc_crypt(uint8_t *s)
{
    uint32_t d = pk_ld32(s + 12);
    if ((d >> 25) || ((d >> 24) & 1)) {
        pk_st32(s + 12, d | (1u << 24));
        return;
    }
    uint32_t azc = d & 0xF, tzc = (d >> 8) & 0xF, decrypt = (d >> 12) & 1;
    uint32_t add_len = (d >> 13) & 7, len = (d >> 17) & 0x7F;
    uint32_t final_len = len < 125 - add_len ? len : 125 - add_len;
    d &= ~((1u << 16) | (0x7Fu << 17));
    d |= ((uint32_t)(final_len != len) << 16) | (final_len << 17);
    pk_st32(s + 12, d);

    uint8_t key[32], nonce[12], poly_key[32], lens[16], tag[16];
    memcpy(key, s + 16, 32);
    memcpy(nonce, s, 12);
    crypto_stream_chacha20_ietf(poly_key, 32, nonce, key);

    uint32_t aead_len = add_len * 16, msg_len = final_len * 16;
    uint8_t *msg = s + 48 + aead_len;
    /* the lengths wrap modulo 2^64 when a zero-count exceeds its length, as in C and Go */
    pk_st64(lens, (uint64_t)aead_len - azc);
    pk_st64(lens + 8, (uint64_t)msg_len - tzc);

    crypto_onetimeauth_poly1305_state st;
    if (!decrypt) {
        crypto_stream_chacha20_ietf_xor_ic(msg, msg, msg_len, nonce, 1, key);
        if (tzc) memset(msg + msg_len - tzc, 0, tzc);
    }
    crypto_onetimeauth_poly1305_init(&st, poly_key);
    crypto_onetimeauth_poly1305_update(&st, s + 48, aead_len + msg_len);
    crypto_onetimeauth_poly1305_update(&st, lens, 16);
    crypto_onetimeauth_poly1305_final(&st, tag);
    if (decrypt) crypto_stream_chacha20_ietf_xor_ic(msg, msg, msg_len, nonce, 1, key);
    memcpy(s + 16, tag, 16);
}
