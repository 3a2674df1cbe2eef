/* Gaussian pixel noise for the CPU fast path (memrnn/native.py compiles this file, memrnn/noise.py calls it).

   Bits: Philox4x32-10 (Salmon, Moraes, Dror & Shaw, SC 2011), the counter-based generator of
   cuRAND, JAX and Random123: block b of a stream with 64-bit key k is philox(counter = (b, 0),
   key = k), four 32-bit words, computed independently of every other block. Normals: Box-Muller on
   24-bit uniforms, u1 in (0, 1] and u2 in [0, 1), as torch's CPU normal_ uses them.

   Layout: chunk c of a stream holds normals 1024 c .. 1024 c + 1023 from blocks 256 c .. 256 c + 255;
   block 256 c + j gives the normals at offsets j, 256 + j, 512 + j and 768 + j of its chunk, so
   each of the four outputs is one contiguous vector store. A fill may start anywhere in the stream
   and may be split anywhere over threads without changing a value; memrnn_normal_streams shares
   fills out over torch's OpenMP threads (one libgomp in the process). Compiled with -O3 -ffast-math
   -march=native: Philox runs on 16 blocks at once (AVX-512 intrinsics, else gcc's vectorised scalar
   loop), the Box-Muller loop vectorises with glibc's vector logf and cosf (libmvec); the sine is
   written cos(t - pi/2), since a sinf and cosf of one angle would be merged into a sincos call that
   does not vectorise. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

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

#ifdef __AVX512F__
/* Philox4x32-10 of 16 consecutive blocks at once, the same bits as philox10: the 32 x 32 -> 64-bit
   products of 16 lanes are two vpmuludq (even lanes, then odd lanes), whose halves two blends gather:
   a training batch's fill runs 1.5 times as fast as with gcc's vectorised uint64_t products. */
static inline void multiply(__m512i x, __m512i m, __m512i *hi, __m512i *lo) {
    __m512i even = _mm512_mul_epu32(x, m), odd = _mm512_mul_epu32(_mm512_srli_epi64(x, 32), m);
    *hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
    *lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
}

static void philox_blocks(uint32_t words[4][BLOCKS], uint64_t first_block, uint32_t k0, uint32_t k1) {
    const __m512i m0 = _mm512_set1_epi32((int)0xD2511F53u), m1 = _mm512_set1_epi32((int)0xCD9E8D57u);
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int j = 0; j < BLOCKS; j += 16) {
        /* blocks base .. base + 15; base is a multiple of 16, so their low words never carry */
        uint64_t base = first_block + (uint64_t)j;
        __m512i c0 = _mm512_add_epi32(_mm512_set1_epi32((int)(uint32_t)base), lanes);
        __m512i c1 = _mm512_set1_epi32((int)(uint32_t)(base >> 32)), c2 = _mm512_setzero_si512(), c3 = c2;
        uint32_t a = k0, b = k1;
        for (int round = 0; round < 10; round++) {
            __m512i hi0, lo0, hi1, lo1;
            multiply(c0, m0, &hi0, &lo0);
            multiply(c2, m1, &hi1, &lo1);
            c0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c1), _mm512_set1_epi32((int)a));
            c2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3), _mm512_set1_epi32((int)b));
            c1 = lo1;
            c3 = lo0;
            a += 0x9E3779B9u;
            b += 0xBB67AE85u;
        }
        _mm512_storeu_si512(words[0] + j, c0);
        _mm512_storeu_si512(words[1] + j, c1);
        _mm512_storeu_si512(words[2] + j, c2);
        _mm512_storeu_si512(words[3] + j, c3);
    }
}
#else
static void philox_blocks(uint32_t words[4][BLOCKS], uint64_t first_block, uint32_t k0, uint32_t k1) {
    for (int j = 0; j < BLOCKS; j++) {
        uint64_t block = first_block + (uint64_t)j;
        uint32_t c[4] = {(uint32_t)block, (uint32_t)(block >> 32), 0, 0};
        philox10(c, k0, k1);
        for (int w = 0; w < 4; w++) words[w][j] = c[w];
    }
}
#endif

static void chunk_normals(float *out, uint64_t chunk, uint32_t k0, uint32_t k1, float mean, float std) {
    const float scale = 1.0f / 16777216.0f, two_pi = 6.283185307179586f, half_pi = 1.5707963267948966f;
    uint32_t c[4][BLOCKS];
    philox_blocks(c, chunk * BLOCKS, k0, k1);
    for (int j = 0; j < BLOCKS; j++) {
        float r0 = std * sqrtf(-2.0f * logf((float)((c[0][j] >> 8) + 1) * scale));
        float r1 = std * sqrtf(-2.0f * logf((float)((c[2][j] >> 8) + 1) * scale));
        float t0 = two_pi * (float)(c[1][j] >> 8) * scale, t1 = two_pi * (float)(c[3][j] >> 8) * scale;
        out[j] = mean + r0 * cosf(t0);
        out[BLOCKS + j] = mean + r0 * cosf(t0 - half_pi);
        out[2 * BLOCKS + j] = mean + r1 * cosf(t1);
        out[3 * BLOCKS + j] = mean + r1 * cosf(t1 - half_pi);
    }
}

/* Float32 values to bfloat16, rounded to nearest (ties to even). */
static void to_bf16(uint16_t *out, const float *values, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, values + i, sizeof bits);
        out[i] = (uint16_t)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
    }
}

/* Elements begin .. end - 1 of a fill whose element i is normal first + i of the stream with this key,
   times std plus mean, written row-major into rows of row_length values that lie row_stride values
   apart (float32, or bfloat16 rounded to nearest when bf16 is set). Any split of [0, n) into ranges
   gives the same values. */
static void normal_range(void *out, int bf16, int64_t row_length, int64_t row_stride, uint64_t key, uint64_t first,
                         int64_t begin, int64_t end, float mean, float std) {
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    float values[CHUNK];
    int64_t i = begin, row = begin / row_length, col = begin % row_length;
    while (i < end) {
        uint64_t at = first + (uint64_t)i;
        int64_t offset = (int64_t)(at % CHUNK), count = CHUNK - offset;
        if (count > end - i) count = end - i;
        chunk_normals(values, at / CHUNK, k0, k1, mean, std);
        for (int64_t done = 0; done < count;) {  /* runs of one row at a time */
            int64_t run = row_length - col < count - done ? row_length - col : count - done;
            int64_t place = row * row_stride + col;
            if (bf16)
                to_bf16((uint16_t *)out + place, values + offset + done, run);
            else
                memcpy((float *)out + place, values + offset + done, (size_t)run * sizeof(float));
            done += run;
            col += run;
            if (col == row_length) {
                col = 0;
                row++;
            }
        }
        i += count;
    }
}

/* Fills of `streams` streams, stream m into out + m * stream_stride values with key keys[m], each of n
   values in rows as above, each split into `parts` ranges; the ranges run on OpenMP threads. */
void memrnn_normal_streams(void *out, int bf16, int64_t streams, int64_t stream_stride, int64_t row_length,
                           int64_t row_stride, const uint64_t *keys, uint64_t first, int64_t n, int64_t parts,
                           float mean, float std) {
    const int64_t size = bf16 ? 2 : 4;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t m = 0; m < streams; m++)
        for (int64_t part = 0; part < parts; part++)
            normal_range((char *)out + m * stream_stride * size, bf16, row_length, row_stride, keys[m], first,
                         n * part / parts, n * (part + 1) / parts, mean, std);
}

/* The raw block: out = philox4x32-10(counter, key), for the known-answer tests. */
void memrnn_philox(uint32_t out[4], const uint32_t counter[4], const uint32_t key[2]) {
    memcpy(out, counter, 4 * sizeof(uint32_t));
    philox10(out, key[0], key[1]);
}
