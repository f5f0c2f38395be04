/* Shared helpers of the accelerator's C files (not part of the cffi interface). */
#ifndef PKTLAB_PK_INTERNAL_H
#define PKTLAB_PK_INTERNAL_H
#include <stdint.h>
#include <string.h>

#define PK_MAX_INSNS   2048
#define PK_MAX_OPS     20000
#define PK_MEMORY_SZ   256
#define PK_WINDOWS     (2048 - 256)
#define PK_MARK        0xFFFFFFFFu

static inline uint32_t pk_ld32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void pk_st32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

static inline void pk_st64(uint8_t *p, uint64_t v)
{
    pk_st32(p, (uint32_t)v);
    pk_st32(p + 4, (uint32_t)(v >> 32));
}

/* expand(len, seed32, num): ChaCha20-IETF keystream, nonce = LE32(num) || "PC_EXPND", counter 0. */
void pk_expand(uint8_t *out, uint32_t len, const uint8_t *seed32, uint32_t num);

/* CryptoCycle pieces mkitem2 needs (pkt-reference.md 5.1). */
void pk_cc_init(uint8_t *s2048, const uint8_t *seed32, uint64_t nonce);
void pk_cc_make_fuzzable(uint8_t *s2048);
void pk_cc_crypt(uint8_t *s2048);

/* RandGen: returns the program length or PK_TOO_BIG / PK_INVALID / PK_NOMEM. */
int pk_randgen(const uint8_t *seed32, uint32_t *insns2048);
#endif
