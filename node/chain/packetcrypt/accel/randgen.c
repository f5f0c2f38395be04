/* RandGen: program generation from a 32-byte seed (randhash.md section 6). Mirrors ../randgen.py draw for draw. */
#include <stdlib.h>
#include "randhash.h"
#include "pk_internal.h"

#define VARS_CAP 65536

enum { OP_IN = 64, OP_MEMORY, OP_LOOP, OP_IF_LIKELY, OP_IF_RANDOM, OP_JMP, OP_END };

typedef struct { uint32_t first, count, cost, dbl, outs; } OpClass;
static const OpClass C1_1 = {1, 11, 1, 0, 1}, C2_1 = {12, 24, 2, 0, 1}, C2_2 = {36, 15, 4, 0, 2},
                     C4_2 = {51, 8, 8, 1, 2}, C4_4 = {59, 5, 16, 1, 4};

typedef struct {
    const uint8_t *seed;
    uint32_t block[16];
    uint32_t next, ctr;
    uint32_t *insns;
    int n_insns;
    uint32_t vars[VARS_CAP];
    int n_vars;
    int depth;
    int too_big;
    int err;
} Gen;

static uint32_t rnd(Gen *g)
{
    if (g->next >= 16) {
        uint8_t b[64];
        pk_expand(b, 64, g->seed, g->ctr++);
        for (int i = 0; i < 16; i++) g->block[i] = pk_ld32(b + 4 * i);
        g->next = 0;
    }
    return g->block[g->next++];
}

static int coin(Gen *g, uint32_t n) { return rnd(g) % n == 0; }
static uint32_t rand_range(Gen *g, uint32_t lo, uint32_t hi) { return rnd(g) % (hi - lo) + lo; }

static int spend(int64_t *cell, int64_t amount)
{
    if (*cell >= amount) { *cell -= amount; return 1; }
    return 0;
}

static void emit(Gen *g, uint32_t insn)
{
    if (g->n_insns >= PK_MAX_INSNS) g->too_big = 1;
    else g->insns[g->n_insns++] = insn;
}

static void push_var(Gen *g, uint32_t v)
{
    if (g->n_vars >= VARS_CAP) { g->err = 1; return; }
    g->vars[g->n_vars++] = v;
}

static void open_scope(Gen *g) { g->depth++; push_var(g, PK_MARK); }

static void close_scope(Gen *g)
{
    emit(g, OP_END);
    g->depth--;
    while (g->n_vars > 0 && g->vars[--g->n_vars] != PK_MARK) {}
}

static uint32_t pick_var(Gen *g, int dbl)
{
    uint32_t *v = g->vars;
    int need = dbl ? 2 : 1;
    int eof = g->n_vars, bof = eof - 1;
    for (; bof >= 0; bof--) {                 /* walk frames from the innermost outwards */
        if (v[bof] == PK_MARK) {
            if (eof - bof - 1 >= need) {
                if (bof == 0 || !coin(g, 4)) break;
            }
            eof = bof;
        }
    }
    if (bof < 0 || eof <= bof + 1) { g->err = 1; return 0; }   /* impossible for RandGen's own stack */
    int j = (int)rand_range(g, (uint32_t)(bof + 1), (uint32_t)eof) + 1;
    for (;;) {
        if (j >= eof) j = bof + 1;
        if ((!dbl || j > bof + 1) && coin(g, 8)) break;
        if (!(v[j] & 1) && (!dbl || !(v[j - 1] & 1))) break;
        j++;
    }
    v[j] |= 1;
    if (dbl) v[j - 1] |= 1;
    return (uint32_t)j;
}

static uint32_t operand_a(Gen *g, int dbl) { return pick_var(g, dbl) << 9; }

static uint32_t operand_b(Gen *g, int dbl)
{
    if (coin(g, 4)) return (rnd(g) << 20) | (1u << 18);
    return pick_var(g, dbl) << 20;
}

static int gen_op(Gen *g, const OpClass *c, int64_t *cell)
{
    uint32_t r = rnd(g);                      /* drawn before the budget check */
    if (!spend(cell, c->cost)) return 0;
    uint32_t insn = c->first + r % c->count;
    insn |= operand_a(g, (int)c->dbl);        /* A first, then B */
    if (c != &C1_1) insn |= operand_b(g, (int)c->dbl);
    emit(g, insn);
    for (uint32_t i = 0; i < c->outs; i++) push_var(g, 0);
    return 1;
}

static int gen_input(Gen *g, int64_t *cell)
{
    if (!spend(cell, 2)) return 0;
    push_var(g, 0);
    emit(g, (rnd(g) << 8) | OP_IN);
    return 1;
}

static void gen_body(Gen *g, int64_t *cell, int new_scope);

static int gen_branch(Gen *g, int64_t *cell)
{
    if (!spend(cell, 50)) return 0;
    uint32_t opc = coin(g, 2) ? OP_IF_RANDOM : OP_IF_LIKELY;
    emit(g, operand_a(g, 0) | opc | (2u << 20));
    int j1 = g->n_insns;
    emit(g, OP_JMP);
    int64_t arm1 = *cell * 7 / 32;
    gen_body(g, &arm1, 1);
    int j2 = g->n_insns;
    emit(g, OP_JMP);
    int64_t arm2 = *cell * 7 / 32;
    gen_body(g, &arm2, 1);
    if (j1 < g->n_insns) g->insns[j1] = ((uint32_t)(j2 - j1) << 8) | OP_JMP;
    if (j2 < g->n_insns) g->insns[j2] = ((uint32_t)(g->n_insns - j2 - 1) << 8) | OP_JMP;
    return 1;
}

static void gen_loop(Gen *g, int64_t *cell)
{
    uint32_t count = rand_range(g, 2, 7 + 29 * (uint32_t)g->depth);
    uint32_t n_mem = rand_range(g, 2, 4);
    if (*cell < 20 * (int64_t)count) return;
    *cell /= count;
    emit(g, (count << 20) | OP_LOOP);
    open_scope(g);
    uint32_t tmpl = (rnd(g) << 8) | OP_MEMORY;
    for (uint32_t i = 0; i < n_mem; i++) {
        if (!spend(cell, 20)) break;
        push_var(g, 0);
        uint32_t c = rnd(g);
        emit(g, (tmpl & ~(0xFu << 9)) | ((c & 0xF) << 9));
    }
    gen_body(g, cell, 0);
    close_scope(g);
}

static void gen_body(Gen *g, int64_t *cell, int new_scope)
{
    if (new_scope) open_scope(g);
    while (g->n_insns <= PK_MAX_INSNS && !g->err) {
        uint32_t m = rand_range(g, 2, 12);
        for (uint32_t i = 1; i <= m; i++) {
            if (coin(g, 4 * m / i) && gen_op(g, &C4_4, cell)) continue;
            if (coin(g, 3 * m / i) && gen_op(g, &C4_2, cell)) continue;
            if (coin(g, 3 * m / i) && gen_op(g, &C2_2, cell)) continue;
            if (coin(g, 2 * m / i) && gen_op(g, &C2_1, cell)) continue;
            if (coin(g, i) && gen_input(g, cell)) continue;
            if (gen_op(g, &C1_1, cell)) continue;
            goto done;
        }
        if ((rnd(g) % 64) + ((uint32_t)g->n_insns * 25 / 2048) < 50) {
            if (!gen_branch(g, cell)) goto done;
        }
        if (rnd(g) % 32 < 23) {
            gen_loop(g, cell);
            goto done;
        }
    }
done:
    if (new_scope) close_scope(g);
}

int pk_randgen(const uint8_t *seed32, uint32_t *insns)
{
    Gen *g = calloc(1, sizeof(Gen));
    if (!g) return PK_NOMEM;
    g->seed = seed32;
    g->next = 16;
    g->insns = insns;
    int64_t budget = 20000;
    gen_loop(g, &budget);
    int rc = g->err ? PK_INVALID : g->too_big ? PK_TOO_BIG : g->n_insns;
    free(g);
    return rc;
}
