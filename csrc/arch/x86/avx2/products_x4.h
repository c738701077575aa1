// The quantized products on four-row groups (products.h) on 256-bit registers: the body that the
// avx2 and avx_vnni tiers share, so both run one arithmetic. Each tier's products.cpp includes it
// inside its own namespace after defining
//   TIER                   its target attribute (arch/kernels.h);
//   dot(u, s)              per int32 lane, the sum of four products of unsigned bytes u and
//                          signed bytes s;
//   dot_by(u, s, m)        the same, times m (halves(a, b): a in lanes 0-3, b in lanes 4-7);
//   dot2(u1, s1, u2, s2)   dot(u1, s1) + dot(u2, s2), where u1, u2 are 4-bit values;
// and only those differ: vpdpbusd where the CPU has AVX-VNNI, vpmaddubsw and vpmaddwd where not.
//
// 4-bit weights: one 32-byte load holds two rows' 16 bytes of nibbles. Masked, it gives both
// rows' values 0-15 (low nibbles); shifted, their values 16-31. Against the activations' first
// and second 16 bytes broadcast to both lanes, dot2 gives int32 sums: lanes 0-3 row one, 4-7 row
// two. One _mm256_hadd_epi32 of the two row pairs leaves [r0 r0 r2 r2 | r1 r1 r3 r3], scaled in
// float. 8-bit weights take the sign trick (|w| unsigned times sign(w) * x) row by row, and three
// hadds make [r0 r1 r2 r3 | r0 r1 r2 r3]. A row in two activation parts adds them as integers
// (quantize.h): 256 sum(q qx1) + sum(q qx2), for the 4-bit formats; the 8-bit ones add each
// part's scaled sums.
#pragma once

// Blocks [b0, b1) of a group's rows; `add`: add to y rather than set it; `ahead`: bytes ahead of
// each block to prefetch (0: none).
struct Span {
  int64_t b0, b1;
  bool add;
  int64_t ahead;
};

// A decode step streams the weights once, one group after another: each block asks for the bytes
// 8 KiB ahead, non-temporally (so the stream does not evict the activations, which a long row in
// two parts, as the down map's 14336 values, spreads over most of L1). Measured on a 7B's decode:
// 1.2x; 2x on its down map in two parts.
constexpr int64_t PREFETCH_AHEAD = 8192;

// One group of four weight rows against R (1 to 4) activation rows from r0, each in P parts, over
// blocks [b0, b1) of the row: y[r][4g .. 4g + 3] set (or, with `add`, added to).
template <QType T, int R, int P>
TIER void group(const uint8_t* w, int64_t g, const QuantizedRows& x, int64_t r0, float* y, int64_t ldy,
                const Span& span) {
  using G = Group<T>;
  const int64_t blocks = x.k / QBLOCK;
  const __m256i nibble = _mm256_set1_epi8(0x0F);
  const __m256i pairs = _mm256_setr_epi32(0, 0, 2, 2, 1, 1, 3, 3);  // [s0 s0 s2 s2 | s1 s1 s3 s3]
  __m256 acc[R];
  __m128 correction[R];
  for (int r = 0; r < R; ++r) {
    acc[r] = _mm256_setzero_ps();
    correction[r] = _mm_setzero_ps();
  }
  for (int64_t b = span.b0; b < span.b1; ++b) {
    const uint8_t* block = w + (g * blocks + b) * G::size;
    if (span.ahead) _mm_prefetch(reinterpret_cast<const char*>(block + span.ahead), _MM_HINT_NTA);
    const __m128 d4 = _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(block)));
    __m128 extra4 = _mm_setzero_ps();  // times each activation block's scaled sum
    if constexpr (T == QType::Q4_1) extra4 = _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(block + 8)));
    if constexpr (T == QType::Q4_0) extra4 = _mm_mul_ps(d4, _mm_set1_ps(-8.0f));
    if constexpr (T == QType::K8) extra4 = _mm_loadu_ps(reinterpret_cast<const float*>(block + K8_M));
    const uint8_t* qs = block + G::scales;
    if constexpr (G::bytes) {
      // pair sums times 1 (Q8_0), or times each half block's scale (K8: int16 lanes 0-7 hold
      // the first 16 values' pair sums, 8-15 the rest's)
      __m256i weights[4], magnitude[4], multiplier[4];
      for (int i = 0; i < 4; ++i) {
        weights[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * i));
        magnitude[i] = _mm256_sign_epi8(weights[i], weights[i]);
        if constexpr (T == QType::K8) {
          const auto* sc = reinterpret_cast<const int8_t*>(block + K8_SC + 2 * i);
          multiplier[i] = halves(sc[0], sc[1]);
        }
      }
      for (int r = 0; r < R * P; ++r) {  // each part's block dot in turn, into its row's sums
        const int64_t at = (r0 * P + r) * blocks + b;
        const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q + at * QBLOCK));
        __m256i p[4];
        for (int i = 0; i < 4; ++i) {
          const __m256i signed_x = _mm256_sign_epi8(qx, weights[i]);
          if constexpr (T == QType::K8) {
            p[i] = dot_by(magnitude[i], signed_x, multiplier[i]);
          } else {
            p[i] = dot(magnitude[i], signed_x);
          }
        }
        const __m256i rows = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
        const __m128 s4 = _mm_mul_ps(d4, _mm_set1_ps(x.d[at]));
        acc[r / P] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(rows), _mm256_set_m128(s4, s4), acc[r / P]);
        if constexpr (T == QType::K8) {
          correction[r / P] = _mm_fmadd_ps(extra4, _mm_set1_ps(x.s[at]), correction[r / P]);
        }
      }
    } else {
      const __m256i v01 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs));
      const __m256i v23 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32));
      const __m256i lo01 = _mm256_and_si256(v01, nibble), hi01 = _mm256_and_si256(_mm256_srli_epi16(v01, 4), nibble);
      const __m256i lo23 = _mm256_and_si256(v23, nibble), hi23 = _mm256_and_si256(_mm256_srli_epi16(v23, 4), nibble);
      // the four rows' scales in the order the integer sums come out in: [d0 d0 d2 d2 | d1 d1 d3 d3]
      const __m256 d8 = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(d4), pairs);
      for (int r = 0; r < R; ++r) {
        // the parts' integer sums as one: 256 sum(q qx1) + sum(q qx2), on the second part's scale
        __m256i a = _mm256_setzero_si256(), c = _mm256_setzero_si256();
        float sx = 0;
        int64_t at = 0;
        for (int part = 0; part < P; ++part) {
          at = ((r0 + r) * P + part) * blocks + b;
          const int8_t* qx = x.q + at * QBLOCK;
          const __m256i xa = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qx)));
          const __m256i xb = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qx + 16)));
          a = _mm256_add_epi32(_mm256_slli_epi32(a, 8), dot2(lo01, xa, hi01, xb));
          c = _mm256_add_epi32(_mm256_slli_epi32(c, 8), dot2(lo23, xa, hi23, xb));
          sx += x.s[at];
        }
        const __m256 scale = _mm256_mul_ps(d8, _mm256_set1_ps(x.d[at]));
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_hadd_epi32(a, c)), scale, acc[r]);
        correction[r] = _mm_fmadd_ps(extra4, _mm_set1_ps(sx), correction[r]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    float* out = y + (r0 + r) * ldy + 4 * g;
    if constexpr (G::bytes) {  // [r0 r1 r2 r3 | r0 r1 r2 r3]
      const __m128 rows = _mm_add_ps(_mm256_castps256_ps128(acc[r]), _mm256_extractf128_ps(acc[r], 1));
      const __m128 sum = T == QType::K8 ? _mm_add_ps(rows, correction[r]) : rows;
      _mm_storeu_ps(out, span.add ? _mm_add_ps(_mm_loadu_ps(out), sum) : sum);
    } else {  // [r0 r0 r2 r2 | r1 r1 r3 r3]: add the pairs, then put the rows in order
      const __m128 lo = _mm256_castps256_ps128(acc[r]), hi = _mm256_extractf128_ps(acc[r], 1);
      const __m128 sums = _mm_hadd_ps(lo, hi);  // [r0 r2 r1 r3]
      const __m128 rows = _mm_shuffle_ps(sums, sums, _MM_SHUFFLE(3, 1, 2, 0));
      const __m128 sum = _mm_add_ps(rows, correction[r]);
      _mm_storeu_ps(out, span.add ? _mm_add_ps(_mm_loadu_ps(out), sum) : sum);
    }
  }
}


// Rows [r, c1) against group g, four at a time.
template <QType T, int P>
TIER void rows_of_group(const uint8_t* w, int64_t g, const QuantizedRows& x, int64_t r, int64_t c1, float* y,
                        int64_t ldy, const Span& span) {
  for (; r + 4 <= c1; r += 4) group<T, 4, P>(w, g, x, r, y, ldy, span);
  switch (c1 - r) {
    case 3:
      group<T, 3, P>(w, g, x, r, y, ldy, span);
      break;
    case 2:
      group<T, 2, P>(w, g, x, r, y, ldy, span);
      break;
    case 1:
      group<T, 1, P>(w, g, x, r, y, ldy, span);
      break;
    default:
      break;
  }
}

// y columns [4 g0, 4 g1) of x's m rows, four activation rows at a time. A decode step's few rows
// meet each group's whole row in turn, so that each thread reads one stream (two groups read side
// by side, or spans of a row, measured 1.6x slower on a 7B's decode). Many rows (a prompt) are
// taken in tiles: TILE_GROUPS groups of W (in L2) meet four activation rows at a time, a span of
// SPAN_BLOCKS blocks at a time, so that the rows' span stays in L1 while the groups' spans pass
// it; and every CHUNK_ROWS rows the tile starts again (the chunk's activations stay in L2).
template <QType T>
TIER void groups(const uint8_t* w, int64_t g0, int64_t g1, const QuantizedRows& x, int64_t m, float* y, int64_t ldy) {
  const bool prompt = m * x.parts > 2 * 4;  // more than a decode step's rows in two parts
  const int64_t blocks = x.k / QBLOCK;
  const int64_t TILE_GROUPS = prompt ? 32 : 1, SPAN_BLOCKS = prompt ? 128 : blocks, CHUNK_ROWS = 64;
  for (int64_t t0 = g0; t0 < g1; t0 += TILE_GROUPS) {
    const int64_t t1 = std::min(g1, t0 + TILE_GROUPS);
    for (int64_t c0 = 0; c0 < m; c0 += CHUNK_ROWS) {
      const int64_t c1 = std::min(m, c0 + CHUNK_ROWS);
      for (int64_t b0 = 0; b0 < blocks; b0 += SPAN_BLOCKS) {
        const int64_t b1 = std::min(blocks, b0 + SPAN_BLOCKS);
        const Span span{b0, b1, b0 > 0, prompt ? 0 : PREFETCH_AHEAD};
        for (int64_t g = t0; g < t1; ++g) {
          int64_t r = c0;
          if (x.parts == 2) {
            rows_of_group<T, 2>(w, g, x, r, c1, y, ldy, span);
          } else {
            rows_of_group<T, 1>(w, g, x, r, c1, y, ldy, span);
          }
        }
      }
    }
  }
}
