/* GRU and LSTM recurrences for the CPU fast path (memrnn/fused.py calls these; memrnn/native.py
   compiles this file once with REAL=float and once with REAL=double).

   gru_forward, gru_backward, lstm_forward and lstm_backward run a whole unroll, forward or back
   through time, for every member of an ensemble: each step's small recurrent matmul is done here
   (a register-tiled kernel) and followed at once by the step's elementwise work while its rows are
   still in cache, with no call back into Python. Members are independent, so they are shared out
   over OpenMP threads: torch's own (one libgomp in the process), whose workers would otherwise spin
   on the cores for milliseconds after each torch operation. A member's arithmetic never depends on
   the thread that runs it.
   gru_step and lstm_step are single steps of every member, for the no-grad probes: they read a noise
   frame where the probe's projection matmul wrote it (bfloat16, no bias, batch- or member-major) and
   add the bias as they start each row, so the frame is never laid out again.

   Layouts (contiguous, member-major): projected (E, T, B, G); states (E, T+1, B, H); gate buffers
   (E, T, B, P) whose rows are padded to a whole number of vectors; weights (E, K, P) padded alike
   with zero columns. tanh(x) is written 2 sigmoid(2x) - 1 so that the only transcendental function
   is exp, which -ffast-math lets gcc vectorise with glibc's vector exp (libmvec). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <tgmath.h>

#ifndef REAL
#define REAL float
#endif
typedef REAL real;

#ifdef __AVX512F__
#define VECTOR_BYTES 64
#define TILE_VECTORS 4 /* 6 x 4 accumulators and 4 weight vectors of 32 zmm registers */
#else
#define VECTOR_BYTES 32
#define TILE_VECTORS 2 /* 6 x 2 accumulators and 2 weight vectors of 16 ymm registers */
#endif
#define LANES (VECTOR_BYTES / (int64_t)sizeof(real))
#define TILE_ROWS 6 /* 6 rows: 1.3 times the speed of 4 at the probe's shape (8 would spill) */
typedef real vec __attribute__((vector_size(VECTOR_BYTES), aligned(sizeof(real))));

/* Values per vector: gate buffers and weights are padded to a multiple of this. */
int64_t lanes(void) { return LANES; }

/* The argument of exp is kept within +-80: under -ffast-math an exp that overflows to inf turns the
   division into NaN (a reciprocal estimate refined by Newton's step), and a GRU's pre-activation can
   pass -44 (tanh) late in training. At +-80 the results are 0, 1 or +-1 to float precision anyway. */
static inline real bounded(real x) { return x < -80 ? -80 : (x > 80 ? 80 : x); }
static inline real sigmoid(real x) { return 1 / (1 + exp(-bounded(x))); }
static inline real tanh_(real x) { return 2 / (1 + exp(-bounded(2 * x))) - 1; }

/* One tile of c (+)= a w: R <= TILE_ROWS rows, V <= TILE_VECTORS vectors of columns, K terms. Inlined
   with constant R and V, so its accumulators live in registers. */
static inline __attribute__((always_inline)) void tile(int R, int V, int64_t K, const real *a, int64_t lda,
                                                       const real *w, int64_t ldw, real *c, int64_t ldc) {
    vec acc[TILE_ROWS][TILE_VECTORS];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < V; v++) acc[r][v] = *(const vec *)(c + r * ldc + v * LANES);
    for (int64_t k = 0; k < K; k++) {
        vec row[TILE_VECTORS];
        for (int v = 0; v < V; v++) row[v] = *(const vec *)(w + k * ldw + v * LANES);
        for (int r = 0; r < R; r++) {
            real x = a[r * lda + k];
            for (int v = 0; v < V; v++) acc[r][v] += x * row[v];
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < V; v++) *(vec *)(c + r * ldc + v * LANES) = acc[r][v];
}

#define TILE(R, V) tile(R, V, K, a + i * lda, lda, w + j, ldw, c + i * ldc + j, ldc)
#define TILES_OF_ROWS(R)                                                        \
    for (j = 0; j + TILE_VECTORS * LANES <= N; j += TILE_VECTORS * LANES) TILE(R, TILE_VECTORS); \
    switch ((N - j) / LANES) {                                                  \
    case 3: TILE(R, 3); break;                                                  \
    case 2: TILE(R, 2); break;                                                  \
    case 1: TILE(R, 1); break;                                                  \
    }

/* c (M x N) += a (M x K) w (K x N); N a multiple of LANES, rows lda, ldw, ldc values apart. */
static void matmul_add(int64_t M, int64_t N, int64_t K, const real *a, int64_t lda, const real *w, int64_t ldw,
                       real *c, int64_t ldc) {
    int64_t i = 0, j;
    for (; i + TILE_ROWS <= M; i += TILE_ROWS) { TILES_OF_ROWS(TILE_ROWS) }
    switch (M - i) { /* the last rows, as one tile */
    case 5: { TILES_OF_ROWS(5) } break;
    case 4: { TILES_OF_ROWS(4) } break;
    case 3: { TILES_OF_ROWS(3) } break;
    case 2: { TILES_OF_ROWS(2) } break;
    case 1: { TILES_OF_ROWS(1) } break;
    }
}

/* A step's projected inputs: rows of values ld apart, real, or bfloat16 when bf16 is set; with a
   bias, (value + bias) + extra is each row's start (extra, a trigger's row, may be NULL). */
typedef struct {
    const void *rows;
    int64_t ld;
    int bf16;
    const real *bias, *extra;
} inputs;

static inline float from_bf16(uint16_t bits) {
    uint32_t wide = (uint32_t)bits << 16;
    float value;
    memcpy(&value, &wide, sizeof value);
    return value;
}

/* Rows of c (M x P) set to the inputs' columns [column, column + width) of M rows, the padding to 0. */
static void start_rows(int64_t M, int64_t width, int64_t P, inputs in, int64_t column, real *c) {
    for (int64_t i = 0; i < M; i++) {
        real *row = c + i * P;
        const int64_t at = i * in.ld + column;
        if (in.bf16 && in.bias)
            for (int64_t j = 0; j < width; j++)
                row[j] = from_bf16(((const uint16_t *)in.rows)[at + j]) + in.bias[column + j];
        else if (in.bf16)
            for (int64_t j = 0; j < width; j++) row[j] = from_bf16(((const uint16_t *)in.rows)[at + j]);
        else if (in.bias)
            for (int64_t j = 0; j < width; j++) row[j] = ((const real *)in.rows)[at + j] + in.bias[column + j];
        else
            memcpy(row, (const real *)in.rows + at, (size_t)width * sizeof(real));
        if (in.bias && in.extra)
            for (int64_t j = 0; j < width; j++) row[j] += in.extra[column + j];
        memset(row + width, 0, (size_t)(P - width) * sizeof(real));
    }
}

/* The elementwise work of a step on one batch row, with H hidden units. */

/* GRU, after rz = p_rz + h U_rz: rz <- sigmoid(rz) (r, then z), rh = r h. */
static inline void gru_gates_row(int64_t H, real *restrict rz, const real *restrict h, real *restrict rh) {
    for (int64_t j = 0; j < 2 * H; j++) rz[j] = sigmoid(rz[j]);
    for (int64_t j = 0; j < H; j++) rh[j] = rz[j] * h[j];
}

/* GRU, after n = p_n + (r h) U_n: n <- tanh(n), h_next = h + z (n - h). */
static inline void gru_update_row(int64_t H, real *restrict n, const real *restrict z, const real *restrict h,
                                  real *restrict h_next) {
    for (int64_t j = 0; j < H; j++) {
        n[j] = tanh_(n[j]);
        h_next[j] = h[j] + z[j] * (n[j] - h[j]);
    }
}

/* GRU backward through the update: g (dL/dh_next) += grad_out; d_z = g (n - h) z (1 - z);
   d_n = g z (1 - n^2), the gradient of n's pre-activation; g <- g (1 - z), the direct path to h. */
static inline void gru_back_update_row(int64_t H, real *restrict g, const real *restrict grad_out,
                                       const real *restrict z, const real *restrict n, const real *restrict h,
                                       real *restrict d_z, real *restrict d_n) {
    for (int64_t j = 0; j < H; j++) {
        real grad = g[j] + grad_out[j];
        d_z[j] = grad * (n[j] - h[j]) * z[j] * (1 - z[j]);
        d_n[j] = grad * z[j] * (1 - n[j] * n[j]);
        g[j] = grad * (1 - z[j]);
    }
}

/* GRU backward through the reset gate, given d_rh = d_n U_n^T: d_r = d_rh h r (1 - r); g += d_rh r. */
static inline void gru_back_reset_row(int64_t H, real *restrict g, const real *restrict d_rh,
                                      const real *restrict r, const real *restrict h, real *restrict d_r) {
    for (int64_t j = 0; j < H; j++) {
        d_r[j] = d_rh[j] * h[j] * r[j] * (1 - r[j]);
        g[j] += d_rh[j] * r[j];
    }
}

/* LSTM, after a = p + h U (gates i, f, g, o): a <- (sigmoid(i), sigmoid(f), tanh(g), sigmoid(o));
   c_next = f c + i g; tanh_c = tanh(c_next); h_next = o tanh_c. */
static inline void lstm_cell_row(int64_t H, real *restrict a, const real *restrict c, real *restrict c_next,
                                 real *restrict tanh_c, real *restrict h_next) {
    real *i = a, *f = a + H, *g = a + 2 * H, *o = a + 3 * H;
    for (int64_t j = 0; j < H; j++) {
        i[j] = sigmoid(i[j]);
        f[j] = sigmoid(f[j]);
        g[j] = tanh_(g[j]);
        o[j] = sigmoid(o[j]);
        c_next[j] = f[j] * c[j] + i[j] * g[j];
        tanh_c[j] = tanh_(c_next[j]);
        h_next[j] = o[j] * tanh_c[j];
    }
}

/* LSTM backward: g (dL/dh_next) += grad_out; gc (dL/dc_next) += g o (1 - tanh_c^2); the gates'
   pre-activation gradients d = (gc g i (1 - i), gc c f (1 - f), gc i (1 - g^2), g tanh_c o (1 - o));
   gc <- gc f, the gradient reaching c. */
static inline void lstm_back_row(int64_t H, const real *restrict g, const real *restrict grad_out,
                                 real *restrict gc, const real *restrict a, const real *restrict c,
                                 const real *restrict tanh_c, real *restrict d) {
    const real *i = a, *f = a + H, *gt = a + 2 * H, *o = a + 3 * H;
    for (int64_t j = 0; j < H; j++) {
        real grad = g[j] + grad_out[j];
        real cell = gc[j] + grad * o[j] * (1 - tanh_c[j] * tanh_c[j]);
        d[j] = cell * gt[j] * i[j] * (1 - i[j]);
        d[H + j] = cell * c[j] * f[j] * (1 - f[j]);
        d[2 * H + j] = cell * i[j] * (1 - gt[j] * gt[j]);
        d[3 * H + j] = grad * tanh_c[j] * o[j] * (1 - o[j]);
        gc[j] = cell * f[j];
    }
}

/* One step of one member for B batch rows, states in rows ldh values apart; gates (B x P2 or P4) and
   candidate (B x P1) rows are padded, reset (r h, B x H) is not. */
#define PADDED(width) (((width) + LANES - 1) / LANES * LANES)

static void gru_step_member(int64_t B, int64_t H, inputs p, const real *u_rz, const real *u_n, const real *h,
                            int64_t ldh, real *h_next, int64_t ld_next, real *gates, real *reset, real *candidate) {
    const int64_t P1 = PADDED(H), P2 = PADDED(2 * H);
    start_rows(B, 2 * H, P2, p, 0, gates);
    matmul_add(B, P2, H, h, ldh, u_rz, P2, gates, P2);
    for (int64_t b = 0; b < B; b++) gru_gates_row(H, gates + b * P2, h + b * ldh, reset + b * H);
    start_rows(B, H, P1, p, 2 * H, candidate);
    matmul_add(B, P1, H, reset, H, u_n, P1, candidate, P1);
    for (int64_t b = 0; b < B; b++)
        gru_update_row(H, candidate + b * P1, gates + b * P2 + H, h + b * ldh, h_next + b * ld_next);
}

static void lstm_step_member(int64_t B, int64_t H, inputs p, const real *u, const real *h, const real *c,
                             int64_t ldh, real *h_next, real *c_next, int64_t ld_next, real *gates, real *tanh_c) {
    const int64_t P4 = PADDED(4 * H);
    start_rows(B, 4 * H, P4, p, 0, gates);
    matmul_add(B, P4, H, h, ldh, u, P4, gates, P4);
    for (int64_t b = 0; b < B; b++)
        lstm_cell_row(H, gates + b * P4, c + b * ldh, c_next + b * ld_next, tanh_c + b * H, h_next + b * ld_next);
}

/* Whole unrolls, and single steps for the no-grad probes, of E members. P1, P2 and P4 are H, 2H and
   4H rounded up to a multiple of lanes(). A backward returns -1 when its scratch rows cannot be
   allocated, else 0. */
#define MEMBERS _Pragma("omp parallel for schedule(static)") for (int64_t e = 0; e < E; e++)
#define AT(buffer, t, width) (buffer + ((e * T + (t)) * B) * (width))         /* (E, T, B, width) */
#define STATE(buffer, t) (buffer + ((e * (T + 1) + (t)) * B) * H)             /* (E, T+1, B, H) */

/* Step t of member e of a forward's projected inputs (E,T,B,width), bfloat16 when bf16 is set, else real. */
#define PROJECTED(t, width)                                                                         \
    ((inputs){.rows = (const char *)projected + AT((int64_t)0, t, width) * (bf16 ? 2 : sizeof(real)), \
              .ld = (width), .bf16 = bf16})

/* GRU forward from hidden[:, 0]: projected (E,T,B,3H) (bfloat16 when bf16 is set), u_rz (E,H,P2),
   u_n (E,H,P1) -> hidden (E,T+1,B,H), activated rz (E,T,B,P2) and n (E,T,B,P1), rh (E,T,B,H). */
void gru_forward(int64_t E, int64_t T, int64_t B, int64_t H, int bf16, const void *projected, const real *u_rz,
                 const real *u_n, real *hidden, real *rz, real *rh, real *n) {
    const int64_t P1 = PADDED(H), P2 = PADDED(2 * H);
    MEMBERS
        for (int64_t t = 0; t < T; t++)
            gru_step_member(B, H, PROJECTED(t, 3 * H), u_rz + e * H * P2,
                            u_n + e * H * P1, STATE(hidden, t), H, STATE(hidden, t + 1), H, AT(rz, t, P2),
                            AT(rh, t, H), AT(n, t, P1));
}

/* The probes' frames: frame (B,E,G) of every member's projected input without bias, bfloat16 when bf16 is
   set, else real, its rows row_ld and its members member_ld values apart (each row contiguous); bias and
   extra (E,G), extra NULL when there is none. Member e's rows: */
#define FRAME(G) ((inputs){(const char *)frame + e * member_ld * (bf16 ? 2 : sizeof(real)), row_ld, bf16, \
                           bias + e * (G), extra ? extra + e * (G) : NULL})

/* One GRU step: state h (E,B,H) and a frame -> h_next (E,B,H); scratch gates (E,B,P2), reset (E,B,H),
   candidate (E,B,P1). */
void gru_step(int64_t E, int64_t B, int64_t H, const real *h, const void *frame, int64_t row_ld,
              int64_t member_ld, int bf16, const real *bias, const real *extra, const real *u_rz, const real *u_n,
              real *h_next, real *gates, real *reset, real *candidate) {
    const int64_t P1 = PADDED(H), P2 = PADDED(2 * H);
    MEMBERS
        gru_step_member(B, H, FRAME(3 * H), u_rz + e * H * P2, u_n + e * H * P1, h + e * B * H, H,
                        h_next + e * B * H, H, gates + e * B * P2, reset + e * B * H, candidate + e * B * P1);
}

/* GRU backward: grad_out (E,T,B,H), the forward's buffers, u_rz_t (E,2H,P1), u_n_t (E,H,P1) ->
   grad_projected (E,T,B,3H), the gradients of the projected inputs. */
int gru_backward(int64_t E, int64_t T, int64_t B, int64_t H, const real *grad_out, const real *hidden,
                 const real *rz, const real *n, const real *u_rz_t, const real *u_n_t, real *grad_projected) {
    const int64_t G = 3 * H, P1 = PADDED(H), P2 = PADDED(2 * H);
    int failed = 0;
    MEMBERS {
        real *g = calloc(2 * B * P1, sizeof(real)), *d_rh = g + B * P1;  /* dL/dh carried back; d_n U_n^T */
        if (!g) {
            failed = -1;
            continue;
        }
        for (int64_t t = T - 1; t >= 0; t--) {
            const real *gates = AT(rz, t, P2), *h = STATE(hidden, t);
            real *d = AT(grad_projected, t, G);
            for (int64_t b = 0; b < B; b++)
                gru_back_update_row(H, g + b * P1, AT(grad_out, t, H) + b * H, gates + b * P2 + H,
                                    AT(n, t, P1) + b * P1, h + b * H, d + b * G + H, d + b * G + 2 * H);
            memset(d_rh, 0, B * P1 * sizeof(real));
            matmul_add(B, P1, H, d + 2 * H, G, u_n_t + e * H * P1, P1, d_rh, P1);
            for (int64_t b = 0; b < B; b++)
                gru_back_reset_row(H, g + b * P1, d_rh + b * P1, gates + b * P2, h + b * H, d + b * G);
            matmul_add(B, P1, 2 * H, d, G, u_rz_t + e * 2 * H * P1, P1, g, P1);
        }
        free(g);
    }
    return failed;
}

/* LSTM forward from hidden[:, 0] and cells[:, 0]: projected (E,T,B,4H) holding both biases (bfloat16 when
   bf16 is set), u (E,H,P4) -> hidden and cells (E,T+1,B,H), activated gates (E,T,B,P4), tanh_c (E,T,B,H). */
void lstm_forward(int64_t E, int64_t T, int64_t B, int64_t H, int bf16, const void *projected, const real *u,
                  real *hidden, real *cells, real *gates, real *tanh_c) {
    const int64_t P4 = PADDED(4 * H);
    MEMBERS
        for (int64_t t = 0; t < T; t++)
            lstm_step_member(B, H, PROJECTED(t, 4 * H), u + e * H * P4,
                             STATE(hidden, t), STATE(cells, t), H, STATE(hidden, t + 1), STATE(cells, t + 1), H,
                             AT(gates, t, P4), AT(tanh_c, t, H));
}

/* One LSTM step: state (E,B,2H) holding h then c, and a frame (the bias holding both biases) -> next
   state (E,B,2H); scratch gates (E,B,P4), tanh_c (E,B,H). */
void lstm_step(int64_t E, int64_t B, int64_t H, const real *state, const void *frame, int64_t row_ld,
               int64_t member_ld, int bf16, const real *bias, const real *extra, const real *u, real *next,
               real *gates, real *tanh_c) {
    const int64_t P4 = PADDED(4 * H);
    MEMBERS {
        const real *h = state + e * B * 2 * H;
        real *h_next = next + e * B * 2 * H;
        lstm_step_member(B, H, FRAME(4 * H), u + e * H * P4, h, h + H, 2 * H, h_next, h_next + H, 2 * H,
                         gates + e * B * P4, tanh_c + e * B * H);
    }
}

/* LSTM backward: grad_out (E,T,B,H), the forward's buffers, u_t (E,4H,P1) -> grad_projected (E,T,B,4H). */
int lstm_backward(int64_t E, int64_t T, int64_t B, int64_t H, const real *grad_out, const real *cells,
                  const real *gates, const real *tanh_c, const real *u_t, real *grad_projected) {
    const int64_t G = 4 * H, P1 = PADDED(H), P4 = PADDED(4 * H);
    int failed = 0;
    MEMBERS {
        real *g = calloc(B * (P1 + H), sizeof(real)), *gc = g + B * P1;  /* dL/dh and dL/dc carried back */
        if (!g) {
            failed = -1;
            continue;
        }
        for (int64_t t = T - 1; t >= 0; t--) {
            real *d = AT(grad_projected, t, G);
            for (int64_t b = 0; b < B; b++)
                lstm_back_row(H, g + b * P1, AT(grad_out, t, H) + b * H, gc + b * H, AT(gates, t, P4) + b * P4,
                              STATE(cells, t) + b * H, AT(tanh_c, t, H) + b * H, d + b * G);
            memset(g, 0, B * P1 * sizeof(real));
            matmul_add(B, P1, G, d, G, u_t + e * G * P1, P1, g, P1);
        }
        free(g);
    }
    return failed;
}
