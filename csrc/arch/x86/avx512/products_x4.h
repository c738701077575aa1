// The quantized products on four-row groups (products.h) on 512-bit registers: the body that the
// avx512 and avx512_vnni tiers share, so both run one arithmetic. Each tier's products.cpp
// includes it inside its own namespace after defining
//   TIER                     its target attribute (arch/kernels.h);
//   dot(u, s)                per int32 lane, the sum of four products of unsigned bytes u and
//                            signed bytes s (no int16 step that could saturate);
//   dot2(u1, s1, u2, s2)     dot(u1, s1) + dot(u2, s2), where u1, u2 are 4-bit values;
// and only those differ: vpdpbusd where the CPU has VNNI, vpmaddubsw and vpmaddwd where not.
//
// One group's block is four rows' 32 values. 4-bit weights: one 64-byte load holds the four rows'
// nibbles, a 128-bit lane per row; masked they are each row's values 0-15, shifted its values
// 16-31, met by the activation block's halves broadcast to every lane. 8-bit weights: two loads,
// two lanes per row, regathered so that again lane r holds row r. So lane r's four int32 are row
// r's partial sums, scaled in float by its block scale, and accumulated without any horizontal
// add: the four lanes are summed once, when the group is done. A row in two activation parts
// adds them as integers before that (quantize.h): 256 sum(q qx1) + sum(q qx2), for the 4-bit
// formats; the 8-bit ones add each part's scaled sums.
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
  const __m512i nibble = _mm512_set1_epi8(0x0F), zero = _mm512_setzero_si512();
  const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);  // lane j: value j / 4
  __m512 acc[R];
  __m128 correction[R];
  for (int r = 0; r < R; ++r) {
    acc[r] = _mm512_setzero_ps();
    correction[r] = _mm_setzero_ps();
  }
  for (int64_t b = span.b0; b < span.b1; ++b) {
    const uint8_t* block = w + (g * blocks + b) * G::size;
    if (span.ahead) _mm_prefetch(reinterpret_cast<const char*>(block + span.ahead), _MM_HINT_NTA);
    const __m128 d4 = _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(block)));
    const __m512 d16 = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(d4));  // each row's scale, 4 times
    __m128 extra4 = _mm_setzero_ps();  // times each activation block's scaled sum
    if constexpr (T == QType::Q4_1) extra4 = _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(block + 8)));
    if constexpr (T == QType::Q4_0) extra4 = _mm_mul_ps(d4, _mm_set1_ps(-8.0f));
    if constexpr (T == QType::K8) extra4 = _mm_loadu_ps(reinterpret_cast<const float*>(block + K8_M));
    const uint8_t* qs = block + G::scales;
    if constexpr (G::bytes) {
      // rows 0-1 and 2-3, two lanes (first and second 16 values) per row; |w| against x signed by w
      const __m512i w01 = _mm512_loadu_si512(qs), w23 = _mm512_loadu_si512(qs + 64);
      const __m512i m01 = _mm512_abs_epi8(w01), m23 = _mm512_abs_epi8(w23);
      const __mmask64 n01 = _mm512_movepi8_mask(w01), n23 = _mm512_movepi8_mask(w23);
      __m512i sc01 = zero, sc23 = zero;  // K8: each lane's half-block scale, in the lanes' order
      if constexpr (T == QType::K8) {
        const __m512i sc = _mm512_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(block + K8_SC)));
        sc01 = _mm512_permutexvar_epi32(spread, sc);
        sc23 = _mm512_permutexvar_epi32(_mm512_add_epi32(spread, _mm512_set1_epi32(4)), sc);
      }
      for (int r = 0; r < R * P; ++r) {  // each part's block dot in turn, into its row's sums
        const int64_t at = (r0 * P + r) * blocks + b;
        const __m512i qx =
            _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q + at * QBLOCK)));
        __m512i p01 = dot(m01, _mm512_mask_sub_epi8(qx, n01, zero, qx));
        __m512i p23 = dot(m23, _mm512_mask_sub_epi8(qx, n23, zero, qx));
        if constexpr (T == QType::K8) {
          p01 = _mm512_mullo_epi32(p01, sc01);
          p23 = _mm512_mullo_epi32(p23, sc23);
        }
        // [r0 r1 r2 r3] of the first halves plus the same of the second
        const __m512i rows = _mm512_add_epi32(_mm512_shuffle_i32x4(p01, p23, _MM_SHUFFLE(2, 0, 2, 0)),
                                              _mm512_shuffle_i32x4(p01, p23, _MM_SHUFFLE(3, 1, 3, 1)));
        acc[r / P] =
            _mm512_fmadd_ps(_mm512_cvtepi32_ps(rows), _mm512_mul_ps(d16, _mm512_set1_ps(x.d[at])), acc[r / P]);
        if constexpr (T == QType::K8) {
          correction[r / P] = _mm_fmadd_ps(extra4, _mm_set1_ps(x.s[at]), correction[r / P]);
        }
      }
    } else {
      const __m512i v = _mm512_loadu_si512(qs);
      const __m512i lo = _mm512_and_si512(v, nibble), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), nibble);
      for (int r = 0; r < R; ++r) {
        // the parts' integer sums as one: 256 sum(q qx1) + sum(q qx2), on the second part's scale
        __m512i sums = _mm512_setzero_si512();
        float sx = 0;
        int64_t at = 0;
        for (int part = 0; part < P; ++part) {
          at = ((r0 + r) * P + part) * blocks + b;
          const int8_t* qx = x.q + at * QBLOCK;
          const __m512i xa = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qx)));
          const __m512i xb = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qx + 16)));
          sums = _mm512_add_epi32(_mm512_slli_epi32(sums, 8), dot2(lo, xa, hi, xb));
          sx += x.s[at];
        }
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), _mm512_mul_ps(d16, _mm512_set1_ps(x.d[at])), acc[r]);
        correction[r] = _mm_fmadd_ps(extra4, _mm_set1_ps(sx), correction[r]);
      }
    }
  }
  const __m512i firsts = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  for (int r = 0; r < R; ++r) {  // each lane's four sums added, then lane r's sum to y's column r
    __m512 t = _mm512_add_ps(acc[r], _mm512_permute_ps(acc[r], _MM_SHUFFLE(1, 0, 3, 2)));
    t = _mm512_add_ps(t, _mm512_permute_ps(t, _MM_SHUFFLE(2, 3, 0, 1)));
    const __m128 rows = _mm512_castps512_ps128(_mm512_permutexvar_ps(firsts, t));
    float* out = y + (r0 + r) * ldy + 4 * g;
    const __m128 sum = _mm_add_ps(rows, correction[r]);
    _mm_storeu_ps(out, span.add ? _mm_add_ps(_mm_loadu_ps(out), sum) : sum);
  }
}

// Groups g and g + 1 of a 4-bit format against R activation rows, as `group` computes each: the
// activation block's broadcasts and scales are loaded once for both (a prompt's products are
// bound by these instructions, not by memory).
template <QType T, int R, int P>
TIER void pair(const uint8_t* w, int64_t g, const QuantizedRows& x, int64_t r0, float* y, int64_t ldy,
               const Span& span) {
  static_assert(!Group<T>::bytes, "4-bit formats only");
  using G = Group<T>;
  const int64_t blocks = x.k / QBLOCK;
  const __m512i nibble = _mm512_set1_epi8(0x0F);
  const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  __m512 acc[2][R];
  __m256 correction[R];  // both groups' four rows
  for (int r = 0; r < R; ++r) {
    acc[0][r] = acc[1][r] = _mm512_setzero_ps();
    correction[r] = _mm256_setzero_ps();
  }
  for (int64_t b = span.b0; b < span.b1; ++b) {
    const uint8_t* block[2] = {w + (g * blocks + b) * G::size, w + ((g + 1) * blocks + b) * G::size};
    __m512 d16[2];
    __m512i lo[2], hi[2];
    __m128 d4[2], extra4[2];
    for (int i = 0; i < 2; ++i) {
      d4[i] = _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(block[i])));
      d16[i] = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(d4[i]));
      if constexpr (T == QType::Q4_1) {
        extra4[i] = _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(block[i] + 8)));
      } else {
        extra4[i] = _mm_mul_ps(d4[i], _mm_set1_ps(-8.0f));
      }
      const __m512i v = _mm512_loadu_si512(block[i] + G::scales);
      lo[i] = _mm512_and_si512(v, nibble);
      hi[i] = _mm512_and_si512(_mm512_srli_epi16(v, 4), nibble);
    }
    const __m256 extra8 = _mm256_set_m128(extra4[1], extra4[0]);
    for (int r = 0; r < R; ++r) {
      __m512i sums[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
      float sx = 0;
      int64_t at = 0;
      for (int part = 0; part < P; ++part) {  // as in `group`
        at = ((r0 + r) * P + part) * blocks + b;
        const int8_t* qx = x.q + at * QBLOCK;
        const __m512i xa = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qx)));
        const __m512i xb = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qx + 16)));
        for (int i = 0; i < 2; ++i) sums[i] = _mm512_add_epi32(_mm512_slli_epi32(sums[i], 8), dot2(lo[i], xa, hi[i], xb));
        sx += x.s[at];
      }
      const __m512 dx = _mm512_set1_ps(x.d[at]);
      for (int i = 0; i < 2; ++i) {
        acc[i][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums[i]), _mm512_mul_ps(d16[i], dx), acc[i][r]);
      }
      correction[r] = _mm256_fmadd_ps(extra8, _mm256_set1_ps(sx), correction[r]);
    }
  }
  const __m512i firsts = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  for (int r = 0; r < R; ++r) {
    for (int i = 0; i < 2; ++i) {
      __m512 t = _mm512_add_ps(acc[i][r], _mm512_permute_ps(acc[i][r], _MM_SHUFFLE(1, 0, 3, 2)));
      t = _mm512_add_ps(t, _mm512_permute_ps(t, _MM_SHUFFLE(2, 3, 0, 1)));
      const __m128 rows = _mm512_castps512_ps128(_mm512_permutexvar_ps(firsts, t));
      const __m128 c = i == 0 ? _mm256_castps256_ps128(correction[r]) : _mm256_extractf128_ps(correction[r], 1);
      float* out = y + (r0 + r) * ldy + 4 * (g + i);
      const __m128 sum = _mm_add_ps(rows, c);
      _mm_storeu_ps(out, span.add ? _mm_add_ps(_mm_loadu_ps(out), sum) : sum);
    }
  }
}

// R activation rows from r, each in P parts, against groups [t0, t1): two at a time where the
// format allows and the rows are a prompt's (tile > 1).
template <QType T, int R, int P>
TIER void rows_of_tile(const uint8_t* w, int64_t t0, int64_t t1, const QuantizedRows& x, int64_t r, float* y,
                       int64_t ldy, const Span& span) {
  int64_t g = t0;
  if constexpr (!Group<T>::bytes) {
    for (; g + 2 <= t1; g += 2) pair<T, R, P>(w, g, x, r, y, ldy, span);
  }
  for (; g < t1; ++g) group<T, R, P>(w, g, x, r, y, ldy, span);
}

// Rows [r, c1) against groups [t0, t1), four rows at a time.
template <QType T, int P>
TIER void rows(const uint8_t* w, int64_t t0, int64_t t1, const QuantizedRows& x, int64_t r, int64_t c1, float* y,
               int64_t ldy, const Span& span) {
  for (; r + 4 <= c1; r += 4) rows_of_tile<T, 4, P>(w, t0, t1, x, r, y, ldy, span);
  switch (c1 - r) {
    case 3:
      rows_of_tile<T, 3, P>(w, t0, t1, x, r, y, ldy, span);
      break;
    case 2:
      rows_of_tile<T, 2, P>(w, t0, t1, x, r, y, ldy, span);
      break;
    case 1:
      rows_of_tile<T, 1, P>(w, t0, t1, x, r, y, ldy, span);
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
        if (x.parts == 2) {
          rows<T, 2>(w, t0, t1, x, c0, c1, y, ldy, span);
        } else {
          rows<T, 1>(w, t0, t1, x, c0, c1, y, ldy, span);
        }
      }
    }
  }
}
