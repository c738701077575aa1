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
// hadds make [r0 r1 r2 r3 | r0 r1 r2 r3].
#pragma once



// One group of four weight rows against R (1 to 4) activation rows from r0, over blocks [b0, b1)
// of the row: y[r][4g .. 4g + 3] set (or, with `add`, added to).
template <QType T, int R>
TIER void group(const uint8_t* w, int64_t g, const QuantizedRows& x, int64_t r0, float* y, int64_t ldy, int64_t b0,
                int64_t b1, bool add) {
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
  for (int64_t b = b0; b < b1; ++b) {
    const uint8_t* block = w + (g * blocks + b) * G::size;
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
      for (int r = 0; r < R; ++r) {
        const int64_t at = (r0 + r) * blocks + b;
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
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(rows), _mm256_set_m128(s4, s4), acc[r]);
        if constexpr (T == QType::K8) correction[r] = _mm_fmadd_ps(extra4, _mm_set1_ps(x.s[at]), correction[r]);
      }
    } else {
      const __m256i v01 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs));
      const __m256i v23 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32));
      const __m256i lo01 = _mm256_and_si256(v01, nibble), hi01 = _mm256_and_si256(_mm256_srli_epi16(v01, 4), nibble);
      const __m256i lo23 = _mm256_and_si256(v23, nibble), hi23 = _mm256_and_si256(_mm256_srli_epi16(v23, 4), nibble);
      // the four rows' scales in the order the integer sums come out in: [d0 d0 d2 d2 | d1 d1 d3 d3]
      const __m256 d8 = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(d4), pairs);
      for (int r = 0; r < R; ++r) {
        const int64_t at = (r0 + r) * blocks + b;
        const int8_t* qx = x.q + at * QBLOCK;
        const __m256i xa = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qx)));
        const __m256i xb = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qx + 16)));
        const __m256i a = dot2(lo01, xa, hi01, xb), c = dot2(lo23, xa, hi23, xb);
        const __m256 scale = _mm256_mul_ps(d8, _mm256_set1_ps(x.d[at]));
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_hadd_epi32(a, c)), scale, acc[r]);
        correction[r] = _mm_fmadd_ps(extra4, _mm_set1_ps(x.s[at]), correction[r]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    float* out = y + (r0 + r) * ldy + 4 * g;
    if constexpr (G::bytes) {  // [r0 r1 r2 r3 | r0 r1 r2 r3]
      const __m128 rows = _mm_add_ps(_mm256_castps256_ps128(acc[r]), _mm256_extractf128_ps(acc[r], 1));
      const __m128 sum = T == QType::K8 ? _mm_add_ps(rows, correction[r]) : rows;
      _mm_storeu_ps(out, add ? _mm_add_ps(_mm_loadu_ps(out), sum) : sum);
    } else {  // [r0 r0 r2 r2 | r1 r1 r3 r3]: add the pairs, then put the rows in order
      const __m128 lo = _mm256_castps256_ps128(acc[r]), hi = _mm256_extractf128_ps(acc[r], 1);
      const __m128 sums = _mm_hadd_ps(lo, hi);  // [r0 r2 r1 r3]
      const __m128 rows = _mm_shuffle_ps(sums, sums, _MM_SHUFFLE(3, 1, 2, 0));
      const __m128 sum = _mm_add_ps(rows, correction[r]);
      _mm_storeu_ps(out, add ? _mm_add_ps(_mm_loadu_ps(out), sum) : sum);
    }
  }
}


// y columns [4 g0, 4 g1) of x's m rows, four activation rows at a time, in tiles: TILE_GROUPS
// groups of W (in L2) meet a chunk of CHUNK_ROWS activation rows (in L2 too), a span of
// SPAN_BLOCKS blocks at a time, so that a span of the rows stays in L1 while the groups' spans
// stream past it (a long row, as the down map's 14336 values in two parts, would not fit).
template <QType T>
TIER void groups(const uint8_t* w, int64_t g0, int64_t g1, const QuantizedRows& x, int64_t m, float* y, int64_t ldy) {
  constexpr int64_t TILE_GROUPS = 16, CHUNK_ROWS = 64, SPAN_BLOCKS = 128;
  const int64_t blocks = x.k / QBLOCK;
  for (int64_t t0 = g0; t0 < g1; t0 += TILE_GROUPS) {
    const int64_t t1 = std::min(g1, t0 + TILE_GROUPS);
    for (int64_t c0 = 0; c0 < m; c0 += CHUNK_ROWS) {
      const int64_t c1 = std::min(m, c0 + CHUNK_ROWS);
      for (int64_t b0 = 0; b0 < blocks; b0 += SPAN_BLOCKS) {
        const int64_t b1 = std::min(blocks, b0 + SPAN_BLOCKS);
        const bool add = b0 > 0;
        for (int64_t g = t0; g < t1; ++g) {
          int64_t r = c0;
          for (; r + 4 <= c1; r += 4) group<T, 4>(w, g, x, r, y, ldy, b0, b1, add);
          switch (c1 - r) {
            case 3:
              group<T, 3>(w, g, x, r, y, ldy, b0, b1, add);
              break;
            case 2:
              group<T, 2>(w, g, x, r, y, ldy, b0, b1, add);
              break;
            case 1:
              group<T, 1>(w, g, x, r, y, ldy, b0, b1, add);
              break;
            default:
              break;
          }
        }
      }
    }
  }
}
