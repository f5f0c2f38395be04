/* pktlab RandGen / RandHash / mkitem2 accelerator (see ../randhash.py and shared/spec/randhash.md).
 * Return codes: >= 0 success, PK_TOO_BIG (-1), PK_INVALID (-2), PK_TOO_LONG (-3), PK_NOMEM (-4). */
#ifndef PKTLAB_RANDHASH_H
#define PKTLAB_RANDHASH_H
#include <stdint.h>

#define PK_TOO_BIG  -1
#define PK_INVALID  -2
#define PK_TOO_LONG -3
#define PK_NOMEM    -4

int pk_init(void);
/* RandGen(seed) -> insns (returns the program length), and progbuf = program over expand(8192, seed, 0). */
int pk_create_prog(const uint8_t *seed32, uint32_t *progbuf2048, uint32_t *insns2048);
/* `cycles` RandHash cycles on the 2048-byte state in place; counts[i] = instructions executed in cycle i. */
int pk_randhash(const uint32_t *insns, int len, const uint32_t *progbuf2048, uint64_t item_no,
                uint8_t *state2048, int cycles, int32_t *counts);
/* One 1024-byte table item (Announce_mkitem2). */
int pk_mkitem2(const uint32_t *insns, int len, const uint32_t *progbuf2048, uint64_t item_no,
               const uint8_t *item_seed32, uint8_t *out1024);
/* Items 0..count-1 of the table for (prog_seed, item_seed), 1024 bytes each. */
int pk_build_table(const uint8_t *prog_seed32, const uint8_t *item_seed32, uint32_t count, uint8_t *out);
#endif
