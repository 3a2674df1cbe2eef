/* The elementwise part of one GRU or LSTM step, forward and backward, for the CPU fast path
   (memrnn/fused.py calls these between its batched matmuls; memrnn/native.py compiles this file
   once with REAL=float and once with REAL=double).

   Every tensor argument is an (E, B, width) view given by its data pointer and its member and batch
   strides in elements; rows are contiguous. One call replaces the ten to twenty torch operations of a
   step, each of which would read and write the step's states again. tanh(x) is written
   2 sigmoid(2x) - 1 so that the only transcendental function is exp, which -ffast-math lets gcc
   vectorise with glibc's vector exp (libmvec). */
#include <stdint.h>
#include <tgmath.h>

#ifndef REAL
#define REAL float
#endif
typedef REAL real;

#define VIEW(name) real *restrict name, int64_t name##_se, int64_t name##_sb
#define CVIEW(name) const real *restrict name, int64_t name##_se, int64_t name##_sb
#define ROW(name) (name + e * name##_se + b * name##_sb)
#define ROWS for (int64_t e = 0; e < E; e++) for (int64_t b = 0; b < B; b++)

static inline real sigmoid(real x) { return 1 / (1 + exp(-x)); }
static inline real tanh_(real x) { return 2 / (1 + exp(-2 * x)) - 1; }

/* GRU, after rz = p_rz + h U_rz: rz <- sigmoid(rz) (r, then z), rh = r h. */
void gru_gates(int64_t E, int64_t B, int64_t H, VIEW(rz), CVIEW(h), VIEW(rh)) {
    ROWS {
        real *s = ROW(rz), *out = ROW(rh);
        const real *x = ROW(h);
        for (int64_t j = 0; j < 2 * H; j++) s[j] = sigmoid(s[j]);
        for (int64_t j = 0; j < H; j++) out[j] = s[j] * x[j];
    }
}

/* GRU, after n = p_n + (r h) U_n: n <- tanh(n), h_next = h + z (n - h). */
void gru_update(int64_t E, int64_t B, int64_t H, VIEW(n), CVIEW(rz), CVIEW(h), VIEW(h_next)) {
    ROWS {
        real *a = ROW(n), *out = ROW(h_next);
        const real *z = ROW(rz) + H, *x = ROW(h);
        for (int64_t j = 0; j < H; j++) {
            a[j] = tanh_(a[j]);
            out[j] = x[j] + z[j] * (a[j] - x[j]);
        }
    }
}

/* GRU backward through the update: g (dL/dh_next) += grad_out; d_z = g (n - h) z (1 - z);
   d_n = g z (1 - n^2), the gradient of n's pre-activation; g <- g (1 - z), the direct path to h. */
void gru_back_update(int64_t E, int64_t B, int64_t H, VIEW(g), CVIEW(grad_out), CVIEW(rz), CVIEW(n), CVIEW(h),
                     VIEW(d_z), VIEW(d_n)) {
    ROWS {
        real *gg = ROW(g), *dz = ROW(d_z), *dn = ROW(d_n);
        const real *go = ROW(grad_out), *z = ROW(rz) + H, *a = ROW(n), *x = ROW(h);
        for (int64_t j = 0; j < H; j++) {
            real grad = gg[j] + go[j];
            dz[j] = grad * (a[j] - x[j]) * z[j] * (1 - z[j]);
            dn[j] = grad * z[j] * (1 - a[j] * a[j]);
            gg[j] = grad * (1 - z[j]);
        }
    }
}

/* GRU backward through the reset gate, given d_rh = d_n U_n^T: d_r = d_rh h r (1 - r); g += d_rh r. */
void gru_back_reset(int64_t E, int64_t B, int64_t H, VIEW(g), CVIEW(d_rh), CVIEW(rz), CVIEW(h), VIEW(d_r)) {
    ROWS {
        real *gg = ROW(g), *dr = ROW(d_r);
        const real *d = ROW(d_rh), *r = ROW(rz), *x = ROW(h);
        for (int64_t j = 0; j < H; j++) {
            dr[j] = d[j] * x[j] * r[j] * (1 - r[j]);
            gg[j] += d[j] * r[j];
        }
    }
}

/* LSTM, after a = p + h U (gates i, f, g, o): a <- (sigmoid(i), sigmoid(f), tanh(g), sigmoid(o));
   c_next = f c + i g; tanh_c = tanh(c_next); h_next = o tanh_c. */
void lstm_cell(int64_t E, int64_t B, int64_t H, VIEW(a), CVIEW(c), VIEW(c_next), VIEW(tanh_c), VIEW(h_next)) {
    ROWS {
        real *i = ROW(a), *f = i + H, *g = i + 2 * H, *o = i + 3 * H, *cn = ROW(c_next), *tc = ROW(tanh_c),
             *hn = ROW(h_next);
        const real *cc = ROW(c);
        for (int64_t j = 0; j < H; j++) {
            i[j] = sigmoid(i[j]);
            f[j] = sigmoid(f[j]);
            g[j] = tanh_(g[j]);
            o[j] = sigmoid(o[j]);
            cn[j] = f[j] * cc[j] + i[j] * g[j];
            tc[j] = tanh_(cn[j]);
            hn[j] = o[j] * tc[j];
        }
    }
}

/* LSTM backward: g (dL/dh_next) += grad_out; gc (dL/dc_next) += g o (1 - tanh_c^2); the gates'
   pre-activation gradients d = (gc g i (1 - i), gc c f (1 - f), gc i (1 - g^2), g tanh_c o (1 - o));
   gc <- gc f, the gradient reaching c. */
void lstm_back(int64_t E, int64_t B, int64_t H, CVIEW(g), CVIEW(grad_out), VIEW(gc), CVIEW(a), CVIEW(c),
               CVIEW(tanh_c), VIEW(d)) {
    ROWS {
        real *dc = ROW(gc), *di = ROW(d), *df = di + H, *dg = di + 2 * H, *dout = di + 3 * H;
        const real *gg = ROW(g), *go = ROW(grad_out), *i = ROW(a), *f = i + H, *gt = i + 2 * H, *o = i + 3 * H,
                   *cc = ROW(c), *tc = ROW(tanh_c);
        for (int64_t j = 0; j < H; j++) {
            real grad = gg[j] + go[j];
            real cell = dc[j] + grad * o[j] * (1 - tc[j] * tc[j]);
            di[j] = cell * gt[j] * i[j] * (1 - i[j]);
            df[j] = cell * cc[j] * f[j] * (1 - f[j]);
            dg[j] = cell * i[j] * (1 - gt[j] * gt[j]);
            dout[j] = grad * tc[j] * o[j] * (1 - o[j]);
            dc[j] = cell * f[j];
        }
    }
}
