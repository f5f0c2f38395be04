/* RandHash interpreter, opcodes, mkitem2 and table building (randhash.md sections 2, 5, 7, 8).
 * Mirrors ../randhash_interp.py and ../randhash_ops.py; results must stay identical to them. */
#include <stdlib.h>
#include <sodium.h>
#include "randhash.h"
#include "pk_internal.h"

typedef unsigned __int128 u128;
typedef __int128 s128;

/* Live stack words per cycle <= 4 per instruction + one marker per scope (scopes run disjoint pc ranges), and
 * hand-written programs that leave scopes open carry them into the next cycle: sized for 4 cycles. */
#define MAX_CYCLES 4
#define STACK_CAP (MAX_CYCLES * 5 * PK_MAX_INSNS + 16)
#define SAVED_CAP (MAX_CYCLES * PK_MAX_INSNS + 16)

enum { OP_IN = 64, OP_MEMORY, OP_LOOP, OP_IF_LIKELY, OP_IF_RANDOM, OP_JMP, OP_END };

/* ---- instruction fields ---------------------------------------------------------------------- */
static inline uint32_t reg_a(uint32_t insn) { return (insn >> 9) & 0x1FF; }
static inline uint32_t reg_b(uint32_t insn) { return (insn >> 20) & 0x1FF; }
static inline int has_imm(uint32_t insn) { return (insn >> 18) & 1; }

static inline uint64_t imm64(uint32_t insn)
{
    uint32_t f = insn >> 20;
    if (!((insn >> 19) & 1)) return (uint64_t)(int64_t)((int32_t)(f << 20) >> 20);   /* sign-extend 12 bits */
    uint32_t a = f & 31, b = (f >> 5) & 31, i = (f >> 10) & 1, s = (f >> 11) & 1;
    uint64_t v = i ? 0x7FFFFFFFFFFFFFFFull : 0xFFFFFFFFFFFFFFFFull;
    v ^= (1ull << b) ^ (1ull << a);
    if (s) v |= 1ull << 63;
    return v;
}

static inline int32_t sx(uint32_t x, int w) { return (int32_t)(x << (32 - w)) >> (32 - w); }

/* ---- opcodes --------------------------------------------------------------------------------- */
static uint32_t lane1(uint32_t op, uint32_t x, int w)
{
    switch (op) {
    case 0: return (uint32_t)__builtin_popcount(x);
    case 1: return x ? (uint32_t)(__builtin_clz(x) - (32 - w)) : (uint32_t)w;
    default: return x ? (uint32_t)__builtin_ctz(x) : (uint32_t)w;
    }
}

static uint32_t op1_1(uint32_t code, uint32_t a)
{
    if (code == 10) return ((a & 0x00FF00FFu) << 8) | ((a >> 8) & 0x00FF00FFu);
    if (code == 11) return __builtin_bswap32(a);
    uint32_t kind = (code - 1) / 3;
    int w = 8 << ((code - 1) % 3);
    if (w == 32) return lane1(kind, a, 32);
    uint32_t mask = (1u << w) - 1, r = 0;
    for (int k = 0; k < 32; k += w) r |= (lane1(kind, (a >> k) & mask, w) & mask) << k;
    return r;
}

static uint32_t lane2(uint32_t kind, uint32_t x, uint32_t y, int w)
{
    uint32_t s = y & (uint32_t)(w - 1);
    switch (kind) {
    case 0: return x + y;
    case 1: return x - y;
    case 2: return x << s;
    case 3: return x >> s;
    case 4: return (uint32_t)(sx(x, w) >> s);
    case 5: return s ? (x << s) | (x >> (w - s)) : x;
    default: return x * y;
    }
}

static uint32_t op2_1(uint32_t code, uint32_t a, uint32_t b)
{
    switch (code) {
    case 33: return a & b;
    case 34: return a | b;
    case 35: return a ^ b;
    }
    uint32_t kind = (code - 12) / 3;
    int w = 8 << ((code - 12) % 3);
    if (w == 32) return lane2(kind, a, b, 32);
    uint32_t mask = (1u << w) - 1, r = 0;
    for (int k = 0; k < 32; k += w) r |= (lane2(kind, (a >> k) & mask, (b >> k) & mask, w) & mask) << k;
    return r;
}

static uint64_t lane2c(uint32_t kind, uint32_t x, uint32_t y, int w)
{
    switch (kind) {
    case 0: return (uint64_t)x + y;
    case 1: return (uint64_t)x - (uint64_t)y;
    case 2: return (uint64_t)((int64_t)sx(x, w) * (int64_t)sx(y, w));
    case 3: return (uint64_t)((int64_t)sx(x, w) * (int64_t)y);
    default: return (uint64_t)x * y;
    }
}

static uint64_t op2_2(uint32_t code, uint32_t a, uint32_t b)
{
    uint32_t kind = (code - 36) / 3;
    int w = 8 << ((code - 36) % 3);
    if (w == 32) return lane2c(kind, a, b, 32);
    uint32_t mask = (1u << w) - 1;
    uint64_t wide = (1ull << (2 * w)) - 1, r = 0;
    for (int k = 0; k < 32 / w; k++)
        r |= (lane2c(kind, (a >> (w * k)) & mask, (b >> (w * k)) & mask, w) & wide) << (2 * w * k);
    return r;
}

static uint64_t op4_2(uint32_t code, uint64_t a, uint64_t b)
{
    uint32_t s = (uint32_t)(b & 63);
    switch (code) {
    case 51: return a + b;
    case 52: return a - b;
    case 53: return a << s;
    case 54: return a >> s;
    case 55: return (uint64_t)((int64_t)a >> s);
    case 56: return s ? (a << s) | (a >> (64 - s)) : a;
    case 57: return s ? (a >> s) | (a << (64 - s)) : a;
    default: return a * b;
    }
}

static u128 op4_4(uint32_t code, uint64_t a, uint64_t b)
{
    switch (code) {
    case 59: return (u128)a + b;
    case 60: return (u128)a - (u128)b;
    case 61: return (u128)((s128)(int64_t)a * (s128)(int64_t)b);
    case 62: return (u128)((s128)(int64_t)a * (s128)(u128)b);
    default: return (u128)a * b;
    }
}

/* ---- interpreter ------------------------------------------------------------------------------ */
typedef struct {
    const uint32_t *prog;
    int len;
    const uint32_t *mem;
    uint32_t *hin, *hout;
    uint32_t stack[STACK_CAP];
    int sp;
    int32_t saved[SAVED_CAP];
    int n_saved;
    int var_count;
    uint32_t hashctr;
    uint32_t loop_cycle;
    int ops;
    int err;
} Machine;

#define FAIL(m, code) do { (m)->err = (code); return -1; } while (0)
#define PUSH(m, v) do { if ((m)->sp >= STACK_CAP) FAIL(m, PK_INVALID); \
                        (m)->stack[(m)->sp++] = (v); (m)->var_count++; } while (0)

/* Run one scope from pc; returns the pc of the END that closed it, or -1 on abort (op limit) or error. */
static int run(Machine *m, int pc)
{
    const int last = m->len - 1;
    if (pc != 0) {
        if (m->n_saved >= SAVED_CAP || m->sp >= STACK_CAP) FAIL(m, PK_INVALID);
        m->saved[m->n_saved++] = m->var_count;
        m->stack[m->sp++] = PK_MARK;
        m->var_count = 0;
    }
    for (;;) {
        if (m->ops > PK_MAX_OPS) return -1;
        m->ops++;
        if (pc < 0 || pc > last) FAIL(m, PK_INVALID);
        uint32_t insn = m->prog[pc];
        uint32_t op = insn & 0xFF;
        switch (op) {
        case OP_MEMORY: {
            uint32_t base = insn >> 17, step = (insn >> 13) & 0xF, carry = (insn >> 9) & 0xF;
            PUSH(m, m->mem[(base + (m->loop_cycle + carry) * step) & 0xFF]);
            break;
        }
        case OP_IN:
            PUSH(m, m->hin[(uint32_t)imm64(insn) & 0xFF]);
            break;
        case OP_LOOP: {
            int32_t n = (int32_t)(uint32_t)imm64(insn);
            int ret = pc;
            for (int32_t i = 0; i < n; i++) {
                m->loop_cycle = (uint32_t)i;
                ret = run(m, pc + 1);
                if (ret < 0) return -1;
            }
            pc = ret;
            if (pc == last) return pc;
            break;
        }
        case OP_IF_LIKELY:
        case OP_IF_RANDOM: {
            uint32_t ra = reg_a(insn);
            if ((int)ra >= m->sp) FAIL(m, PK_INVALID);
            uint32_t c = m->stack[ra];
            int take = op == OP_IF_LIKELY ? (c & 7) != 0 : (c & 1) != 0;
            pc = run(m, take ? pc + 2 : pc + 1);
            if (pc < 0) return -1;
            break;
        }
        case OP_JMP:
            pc += (int)(insn >> 8);
            break;
        case OP_END: {
            int n = m->var_count;
            if (m->n_saved == 0 || m->sp < n + 1 || m->stack[m->sp - n - 1] != PK_MARK) FAIL(m, PK_INVALID);
            uint32_t h = m->hashctr;
            for (int i = m->sp - n; i < m->sp; i++) {
                m->hout[h] += m->stack[i];
                h = (h + 1) & 0xFF;
            }
            m->hashctr = h;
            m->sp -= n + 1;
            m->var_count = m->saved[--m->n_saved];
            return pc;
        }
        default: {
            if (op < 1 || op > 63) FAIL(m, PK_INVALID);
            uint32_t ra = reg_a(insn), rb = reg_b(insn);
            if (op <= 50) {                                /* 32-bit operands */
                if ((int)ra >= m->sp) FAIL(m, PK_INVALID);
                uint32_t a = m->stack[ra];
                if (op <= 11) { PUSH(m, op1_1(op, a)); break; }
                uint32_t b;
                if (has_imm(insn)) b = (uint32_t)imm64(insn);
                else { if ((int)rb >= m->sp) FAIL(m, PK_INVALID); b = m->stack[rb]; }
                if (op <= 35) { PUSH(m, op2_1(op, a, b)); break; }
                uint64_t r = op2_2(op, a, b);
                PUSH(m, (uint32_t)r);
                PUSH(m, (uint32_t)(r >> 32));
                break;
            }
            if (ra < 1 || (int)ra >= m->sp) FAIL(m, PK_INVALID);
            uint64_t a = (uint64_t)m->stack[ra] << 32 | m->stack[ra - 1], b;
            if (has_imm(insn)) b = imm64(insn);
            else {
                if (rb < 1 || (int)rb >= m->sp) FAIL(m, PK_INVALID);
                b = (uint64_t)m->stack[rb] << 32 | m->stack[rb - 1];
            }
            if (op <= 58) {
                uint64_t r = op4_2(op, a, b);
                PUSH(m, (uint32_t)r);
                PUSH(m, (uint32_t)(r >> 32));
            } else {
                u128 r = op4_4(op, a, b);
                PUSH(m, (uint32_t)r);
                PUSH(m, (uint32_t)(r >> 32));
                PUSH(m, (uint32_t)(r >> 64));
                PUSH(m, (uint32_t)(r >> 96));
            }
        }
        }
        pc++;
    }
}

/* RandHash on a state in place, with a caller-provided machine (so tables reuse one allocation). */
static int randhash_with(Machine *m, const uint32_t *insns, int len, const uint32_t *progbuf, uint64_t item_no,
                         uint8_t *state, int cycles, int32_t *counts)
{
    if (len < 1 || len > PK_MAX_INSNS || cycles < 0 || cycles > MAX_CYCLES) return PK_INVALID;
    uint32_t lo[256], hi[256];
    for (int i = 0; i < 256; i++) {
        lo[i] = pk_ld32(state + 4 * i);
        hi[i] = pk_ld32(state + 1024 + 4 * i);
    }
    m->prog = insns;
    m->len = len;
    m->mem = progbuf + item_no % PK_WINDOWS;
    m->hin = lo;
    m->hout = hi;
    m->sp = m->n_saved = m->var_count = 0;
    m->hashctr = m->loop_cycle = 0;
    m->err = 0;
    for (int c = 0; c < cycles; c++) {
        m->ops = 0;
        run(m, 0);
        if (m->err) return m->err;
        if (m->ops > PK_MAX_OPS) return PK_TOO_LONG;
        if (counts) counts[c] = m->ops;
        m->hashctr = 0;
        uint32_t *t = m->hin; m->hin = m->hout; m->hout = t;
    }
    for (int i = 0; i < 256; i++) {
        pk_st32(state + 4 * i, lo[i]);
        pk_st32(state + 1024 + 4 * i, hi[i]);
    }
    return 0;
}

static int mkitem2_with(Machine *m, const uint32_t *insns, int len, const uint32_t *progbuf, uint64_t item_no,
                        const uint8_t *item_seed32, uint8_t *out1024)
{
    uint8_t s[2048];
    pk_cc_init(s, item_seed32, item_no);
    int rc = randhash_with(m, insns, len, progbuf, item_no, s, 2, NULL);
    if (rc) return rc;
    pk_cc_make_fuzzable(s);
    pk_cc_crypt(s);
    memcpy(out1024, s, 1024);
    return 0;
}

/* ---- cffi interface ---------------------------------------------------------------------------- */
int pk_init(void) { return sodium_init() < 0 ? -1 : 0; }

int pk_create_prog(const uint8_t *seed32, uint32_t *progbuf, uint32_t *insns)
{
    int n = pk_randgen(seed32, insns);
    if (n < 0) return n;
    uint8_t buf[8192];
    pk_expand(buf, sizeof buf, seed32, 0);
    for (int i = 0; i < 2048; i++) progbuf[i] = i < n ? insns[i] : pk_ld32(buf + 4 * i);
    return n;
}

int pk_randhash(const uint32_t *insns, int len, const uint32_t *progbuf, uint64_t item_no,
                uint8_t *state, int cycles, int32_t *counts)
{
    Machine *m = malloc(sizeof(Machine));
    if (!m) return PK_NOMEM;
    int rc = randhash_with(m, insns, len, progbuf, item_no, state, cycles, counts);
    free(m);
    return rc;
}

int pk_mkitem2(const uint32_t *insns, int len, const uint32_t *progbuf, uint64_t item_no,
               const uint8_t *item_seed32, uint8_t *out1024)
{
    Machine *m = malloc(sizeof(Machine));
    if (!m) return PK_NOMEM;
    int rc = mkitem2_with(m, insns, len, progbuf, item_no, item_seed32, out1024);
    free(m);
    return rc;
}

int pk_build_table(const uint8_t *prog_seed32, const uint8_t *item_seed32, uint32_t count, uint8_t *out)
{
    uint32_t insns[PK_MAX_INSNS], progbuf[2048];
    int n = pk_create_prog(prog_seed32, progbuf, insns);
    if (n < 0) return n;
    Machine *m = malloc(sizeof(Machine));
    if (!m) return PK_NOMEM;
    int rc = 0;
    for (uint32_t i = 0; i < count && rc == 0; i++)
        rc = mkitem2_with(m, insns, n, progbuf, i, item_seed32, out + (size_t)1024 * i);
    free(m);
    return rc;
}
