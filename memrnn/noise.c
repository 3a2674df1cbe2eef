/* Gaussian pixel noise for the CPU fast path (memrnn/noise.py compiles and loads this file).

   Bits: Philox4x32-10 (Salmon, Moraes, Dror & Shaw, SC 2011), the counter-based generator of
   cuRAND, JAX and Random123: block b of a stream with 64-bit key k is philox(counter = (b, 0),
   key = k), four 32-bit words, computed independently of every other block. Normals: Box-Muller on
   24-bit uniforms, u1 in (0, 1] and u2 in [0, 1), as torch's CPU normal_ uses them.

   Layout: chunk c of a stream holds normals 1024 c .. 1024 c + 1023 from blocks 256 c .. 256 c + 255;
   block 256 c + j gives the normals at offsets j, 256 + j, 512 + j and 768 + j of its chunk, so
   each of the four outputs is one contiguous vector store. A fill that starts at chunk s gives the
   values of the stream from normal 1024 s on, so splitting a fill at chunk boundaries over threads
   changes nothing. Compiled with -O3 -ffast-math -march=native: the block loop vectorises, with
   glibc's vector logf and cosf (libmvec); the sine is written cos(t - pi/2), since a sinf and cosf of
   one angle would be merged into a sincos call that does not vectorise. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define BLOCKS 256
#define CHUNK (4 * BLOCKS)

/* Ten Philox rounds on the counter words c, key words a and b, in place. */
static inline void philox10(uint32_t c[4], uint32_t a, uint32_t b) {
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c[0], p1 = (uint64_t)0xCD9E8D57u * c[2];
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c[1] ^ a, n2 = (uint32_t)(p0 >> 32) ^ c[3] ^ b;
        c[1] = (uint32_t)p1;
        c[3] = (uint32_t)p0;
        c[0] = n0;
        c[2] = n2;
        a += 0x9E3779B9u;
        b += 0xBB67AE85u;
    }
}

static void chunk_normals(float *out, uint64_t chunk, uint32_t k0, uint32_t k1, float mean, float std) {
    const float scale = 1.0f / 16777216.0f, two_pi = 6.283185307179586f, half_pi = 1.5707963267948966f;
    for (int j = 0; j < BLOCKS; j++) {
        uint64_t block = chunk * BLOCKS + (uint64_t)j;
        uint32_t c[4] = {(uint32_t)block, (uint32_t)(block >> 32), 0, 0};
        philox10(c, k0, k1);
        float r0 = std * sqrtf(-2.0f * logf((float)((c[0] >> 8) + 1) * scale));
        float r1 = std * sqrtf(-2.0f * logf((float)((c[2] >> 8) + 1) * scale));
        float t0 = two_pi * (float)(c[1] >> 8) * scale, t1 = two_pi * (float)(c[3] >> 8) * scale;
        out[j] = mean + r0 * cosf(t0);
        out[BLOCKS + j] = mean + r0 * cosf(t0 - half_pi);
        out[2 * BLOCKS + j] = mean + r1 * cosf(t1);
        out[3 * BLOCKS + j] = mean + r1 * cosf(t1 - half_pi);
    }
}

/* out[i] = normal number first_chunk * 1024 + i of the stream with this key, times std plus mean. */
void memrnn_normal(float *out, int64_t n, uint64_t key, uint64_t first_chunk, float mean, float std) {
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    int64_t whole = n / CHUNK;
    for (int64_t c = 0; c < whole; c++)
        chunk_normals(out + c * CHUNK, first_chunk + (uint64_t)c, k0, k1, mean, std);
    if (n > whole * CHUNK) {
        float tail[CHUNK];
        chunk_normals(tail, first_chunk + (uint64_t)whole, k0, k1, mean, std);
        memcpy(out + whole * CHUNK, tail, (size_t)(n - whole * CHUNK) * sizeof(float));
    }
}

/* The same numbers rounded to bfloat16 (to nearest, ties to even), for a bf16 matmul's input: half
   the memory traffic of writing float32 and converting later. */
void memrnn_normal_bf16(uint16_t *out, int64_t n, uint64_t key, uint64_t first_chunk, float mean, float std) {
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    float values[CHUNK];
    for (int64_t start = 0, c = 0; start < n; start += CHUNK, c++) {
        chunk_normals(values, first_chunk + (uint64_t)c, k0, k1, mean, std);
        int64_t count = n - start < CHUNK ? n - start : CHUNK;
        for (int64_t i = 0; i < count; i++) {
            uint32_t bits;
            memcpy(&bits, values + i, sizeof bits);
            out[start + i] = (uint16_t)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
        }
    }
}

/* The raw block: out = philox4x32-10(counter, key), for the known-answer tests. */
void memrnn_philox(uint32_t out[4], const uint32_t counter[4], const uint32_t key[2]) {
    memcpy(out, counter, 4 * sizeof(uint32_t));
    philox10(out, key[0], key[1]);
}
