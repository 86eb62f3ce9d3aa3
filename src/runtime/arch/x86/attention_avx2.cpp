// AVX2 forms of the attention kernels; see attention_avx2.h. AVX2, FMA and BMI2 intrinsics only
// (no AVX-512, no AVX-VNNI): the targets are x86-64-v3 CPUs such as AMD Zen 3.
#include "runtime/arch/x86/attention_avx2.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

namespace qtx::rt::avx2 {
namespace {

// Two int16 (each value truncated to 16 bits, as the plain forms' casts do) as one dword, a in
// the low half: the operand layout of vpmaddwd.
inline int32_t pair16(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint16_t>(a)) | static_cast<uint32_t>(static_cast<uint16_t>(b)) << 16);
}

// Lanes [0, n) of eight dwords set (n ≥ 8: all), for vpmaskmovd.
inline __m256i first_lanes(int n) { return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)); }

// n elements of a thread's scratch from a 64-byte boundary: whole-vector loads then never
// straddle cache lines (std::vector's storage is only 16-byte aligned; at 128 keys the A·V
// loads split half the time measured ~20 % slower).
template <typename T>
T* aligned_scratch(std::vector<T>& v, size_t n) {
  v.resize(n + 64 / sizeof(T));
  return reinterpret_cast<T*>((reinterpret_cast<uintptr_t>(v.data()) + 63) & ~uintptr_t{63});
}

// r[i] (eight rows of eight dwords) becomes its transpose.
inline void transpose_8x8_epi32(__m256i (&r)[8]) {
  __m256i t[8], s[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    s[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
    s[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
    s[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
    s[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm256_permute2x128_si256(s[c], s[c + 4], 0x20);
    r[c + 4] = _mm256_permute2x128_si256(s[c], s[c + 4], 0x31);
  }
}

// ---------------------------------------------------------------------------------------------
// Q·Kᵀ. vpmaddwd multiplies int16 pairs and adds each pair into an int32 lane, exactly (|q − zq|,
// |k − zk| < 2^15 in every case that the plain form's int32 sum does not overflow). Keys are
// packed eight to a vector, kp[jb][p][8] = (k[j,2p] − zk, k[j,2p+1] − zk), queries as dword
// pairs qp[t][p], so one broadcast pair of a query times one vector gives eight keys' partial
// scores: a tile of NQ queries × NB·8 keys shares every load, with no horizontal sums.

template <int NQ, int NB>
[[gnu::always_inline]] inline void qk_tile(const int32_t* qp, int P, const int32_t* kb, int t0, int j0, int T, int32_t* S) {
  __m256i acc[NQ][NB];
  for (auto& row : acc)
    for (auto& x : row) x = _mm256_setzero_si256();
  const size_t ks = static_cast<size_t>(P) * 8;
  for (int p = 0; p < P; ++p) {
    __m256i kv[NB];
    for (int b = 0; b < NB; ++b) kv[b] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kb + b * ks + static_cast<size_t>(p) * 8));
    for (int u = 0; u < NQ; ++u) {
      const __m256i w = _mm256_set1_epi32(qp[static_cast<size_t>(t0 + u) * P + p]);
      for (int b = 0; b < NB; ++b) acc[u][b] = _mm256_add_epi32(acc[u][b], _mm256_madd_epi16(w, kv[b]));
    }
  }
  for (int u = 0; u < NQ; ++u)
    for (int b = 0; b < NB; ++b) {
      const int j = j0 + 8 * b;
      int32_t* o = S + static_cast<size_t>(t0 + u) * T + j;
      if (j + 8 <= T)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(o), acc[u][b]);
      else
        _mm256_maskstore_epi32(o, first_lanes(T - j), acc[u][b]);
    }
}

constexpr int kQkQueries = 4, kQkBlocks = 2;  // 8 accumulators, 2 key vectors, 4 broadcasts: no spills

template <int NB>
void qk_tiles(const int32_t* qp, int P, const int32_t* kb, int Tq, int j0, int T, int32_t* S) {
  int t = 0;
  for (; t + kQkQueries <= Tq; t += kQkQueries) qk_tile<kQkQueries, NB>(qp, P, kb, t, j0, T, S);
  switch (Tq - t) {
    case 3: qk_tile<3, NB>(qp, P, kb, t, j0, T, S); break;
    case 2: qk_tile<2, NB>(qp, P, kb, t, j0, T, S); break;
    case 1: qk_tile<1, NB>(qp, P, kb, t, j0, T, S); break;
    default: break;
  }
}

// Keys j0..T−1 against every query (dh a multiple of 16; qp rows are the queries' centred
// int16): per query one vpmaddwd per sixteen dimensions, four queries' sums reduced together by
// horizontal adds (mod 2^32, as the plain form's int32 sums).
void qk_leftover_keys(const int32_t* qp, const uint8_t* k, int32_t zk, int Tq, int T, int j0, int dh, int ld, int32_t* S) {
  thread_local std::vector<int16_t> kc;
  kc.resize(static_cast<size_t>(dh));
  const int P = dh / 2;
  const __m256i zk16 = _mm256_set1_epi16(static_cast<int16_t>(zk));
  for (int j = j0; j < T; ++j) {
    for (int d = 0; d < dh; d += 16)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(kc.data() + d),
                          _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(k + static_cast<size_t>(j) * ld + d))), zk16));
    auto dot = [&](int t) {
      const int16_t* qr = reinterpret_cast<const int16_t*>(qp + static_cast<size_t>(t) * P);
      __m256i a = _mm256_setzero_si256();
      for (int d = 0; d < dh; d += 16)
        a = _mm256_add_epi32(a, _mm256_madd_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(qr + d)),
                                                  _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kc.data() + d))));
      return a;
    };
    int t = 0;
    for (; t + 4 <= Tq; t += 4) {
      const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(dot(t), dot(t + 1)), _mm256_hadd_epi32(dot(t + 2), dot(t + 3)));
      const __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
      S[static_cast<size_t>(t) * T + j] = _mm_cvtsi128_si32(s4);
      S[static_cast<size_t>(t + 1) * T + j] = _mm_extract_epi32(s4, 1);
      S[static_cast<size_t>(t + 2) * T + j] = _mm_extract_epi32(s4, 2);
      S[static_cast<size_t>(t + 3) * T + j] = _mm_extract_epi32(s4, 3);
    }
    for (; t < Tq; ++t) {
      const __m256i a = dot(t);
      __m128i x = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
      x = _mm_add_epi32(x, _mm_unpackhi_epi64(x, x));
      x = _mm_add_epi32(x, _mm_shuffle_epi32(x, 0xb1));
      S[static_cast<size_t>(t) * T + j] = _mm_cvtsi128_si32(x);
    }
  }
}

}  // namespace

void qk_scores(const uint8_t* q, int32_t zq, const uint8_t* k, int32_t zk, int Tq, int T, int dh, int ld, int32_t* S) {
  if (Tq <= 0 || T <= 0) return;
  if (dh <= 0) {
    std::fill(S, S + static_cast<size_t>(Tq) * T, 0);
    return;
  }
  // The last one or two keys past whole blocks of eight (vit-fmnist: 17 = 2·8 + 1) by dot
  // products (qk_leftover_keys) rather than a block of eight mostly empty.
  const int left = dh % 16 == 0 && T > 8 && T % 8 <= 2 ? T % 8 : 0;
  const int P = (dh + 1) / 2, JB = (T - left + 7) / 8;  // dimension pairs (an odd dh's last pairs with 0); key blocks
  thread_local std::vector<int32_t> kp_buf, qp_buf;
  int32_t* kp = aligned_scratch(kp_buf, static_cast<size_t>(JB) * P * 8);
  int32_t* qp = aligned_scratch(qp_buf, static_cast<size_t>(Tq) * P);
  if (dh % 16 == 0) {
    // Sixteen dimensions of eight keys: widened and centred rows, then an 8 × 8 dword
    // transpose gives the eight pair vectors. Keys past T are zero rows.
    const __m256i zk16 = _mm256_set1_epi16(static_cast<int16_t>(zk)), zq16 = _mm256_set1_epi16(static_cast<int16_t>(zq));
    for (int jb = 0; jb < JB; ++jb)
      for (int d = 0; d < dh; d += 16) {
        __m256i r[8];
        for (int i = 0; i < 8; ++i) {
          const int j = 8 * jb + i;
          r[i] = j < T ? _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(k + static_cast<size_t>(j) * ld + d))), zk16)
                       : _mm256_setzero_si256();
        }
        transpose_8x8_epi32(r);
        for (int i = 0; i < 8; ++i)
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(kp + (static_cast<size_t>(jb) * P + d / 2 + i) * 8), r[i]);
      }
    for (int t = 0; t < Tq; ++t)
      for (int d = 0; d < dh; d += 16)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(qp + static_cast<size_t>(t) * P + d / 2),
                            _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + static_cast<size_t>(t) * ld + d))), zq16));
  } else {
    for (int j = 0; j < JB * 8; ++j)
      for (int p = 0; p < P; ++p) {
        int32_t w = 0;
        if (j < T) {
          const uint8_t* kr = k + static_cast<size_t>(j) * ld;
          w = pair16(kr[2 * p] - zk, 2 * p + 1 < dh ? kr[2 * p + 1] - zk : 0);
        }
        kp[(static_cast<size_t>(j / 8) * P + p) * 8 + j % 8] = w;
      }
    for (int t = 0; t < Tq; ++t) {
      const uint8_t* qr = q + static_cast<size_t>(t) * ld;
      for (int p = 0; p < P; ++p) qp[static_cast<size_t>(t) * P + p] = pair16(qr[2 * p] - zq, 2 * p + 1 < dh ? qr[2 * p + 1] - zq : 0);
    }
  }
  int jb = 0;
  for (; jb + kQkBlocks <= JB; jb += kQkBlocks) qk_tiles<kQkBlocks>(qp, P, kp + static_cast<size_t>(jb) * P * 8, Tq, 8 * jb, T, S);
  for (; jb < JB; ++jb) qk_tiles<1>(qp, P, kp + static_cast<size_t>(jb) * P * 8, Tq, 8 * jb, T, S);
  if (left) qk_leftover_keys(qp, k, zk, Tq, T, T - left, dh, ld, S);
}

namespace {
// ---------------------------------------------------------------------------------------------
// A·V: ctx[t] = Σ_j (v_j − zv) << (kmax − code[t,j]) in uint32 lanes (wrapping as the plain
// form's unsigned shifts do), one query's ND vectors of dimensions in registers over all keys:
// the plain loop's form (GCC already vectorises it well for AVX2), without its branch per key,
// which mispredicts on mixed rows — a code outside [0, kmax] gets the count 32, for which vpslld
// gives 0. Measured slower on Zen 4 (vs the plain loop, T = 128): vpmaddwd on 15-bit planes of
// 2^e (two planes for kmax 15..29) 0.56–0.74×; vpsllvd with the V loads shared by 2–4 queries
// ~0.5×; Horner's rule over keys sorted by code ~0.4× (the bucket loops mispredict); V read as
// bytes (vpmovzxbd, a zero-point term from Σ 2^e) ~0.55×. This form: ~0.93× at 128 keys, ~1.2×
// at 17 (no multiple: the plain loop is already this loop, vectorised by GCC).

template <int ND>
[[gnu::always_inline]] inline void av_row(const int8_t* ct, int T, int lo, int kmax, const int32_t* vbase, int dp, int32_t* o, int dh_left) {
  __m256i acc[ND];
  for (auto& x : acc) x = _mm256_setzero_si256();
  const unsigned span = static_cast<unsigned>(kmax - lo);
  for (int j = 0; j < T; ++j) {
    const int c = ct[j];
    const __m128i cnt = _mm_cvtsi32_si128(static_cast<unsigned>(c - lo) <= span ? kmax - c : 32);
    const int32_t* vr = vbase + static_cast<size_t>(j) * dp;
    for (int i = 0; i < ND; ++i) acc[i] = _mm256_add_epi32(acc[i], _mm256_sll_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(vr + 8 * i)), cnt));
  }
  for (int i = 0; i < ND; ++i) {
    if (8 * i + 8 <= dh_left)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + 8 * i), acc[i]);
    else
      _mm256_maskstore_epi32(o + 8 * i, first_lanes(dh_left - 8 * i), acc[i]);
  }
}
}  // namespace

void av_log2(const int8_t* codes, const uint8_t* v, int32_t zv, int Tq, int T, int dh, int ld, int kmax, int32_t* ctx, int ldc) {
  if (dh > 1024) throw std::invalid_argument("av_log2: head size above 1024");
  if (Tq <= 0 || dh <= 0) return;
  const int D8 = (dh + 7) / 8, dp = 8 * D8;  // dimensions padded to whole vectors
  thread_local std::vector<int32_t> vc_buf;
  int32_t* vc = aligned_scratch(vc_buf, static_cast<size_t>(std::max(T, 1)) * dp);  // [T][dp]: v − zv (mod 2^32)
  const __m256i z = _mm256_set1_epi32(zv);
  for (int j = 0; j < T; ++j) {
    const uint8_t* vr = v + static_cast<size_t>(j) * ld;
    int32_t* out = vc + static_cast<size_t>(j) * dp;
    int d = 0;
    for (; d + 8 <= dh; d += 8)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + d), _mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(vr + d))), z));
    for (; d < dp; ++d) out[d] = d < dh ? static_cast<int32_t>(static_cast<uint32_t>(vr[d]) - static_cast<uint32_t>(zv)) : 0;
  }
  // Codes lo..kmax carry a weight (the plain form's shift kmax − c is defined only below 32);
  // kmax < 0: none.
  const int lo = std::max(0, kmax - 31);
  for (int t = 0; t < Tq; ++t) {
    const int8_t* ct = codes + static_cast<size_t>(t) * T;
    int32_t* o = ctx + static_cast<size_t>(t) * ldc;
    int c8 = 0;
    if (kmax < lo) {
      for (int d = 0; d < dh; ++d) o[d] = 0;
      continue;
    }
    for (; c8 + 8 <= D8; c8 += 8) av_row<8>(ct, T, lo, kmax, vc + 8 * c8, dp, o + 8 * c8, dh - 8 * c8);
    for (; c8 + 4 <= D8; c8 += 4) av_row<4>(ct, T, lo, kmax, vc + 8 * c8, dp, o + 8 * c8, dh - 8 * c8);
    for (; c8 < D8; ++c8) av_row<1>(ct, T, lo, kmax, vc + 8 * c8, dp, o + 8 * c8, dh - 8 * c8);
  }
}

namespace {
// ---------------------------------------------------------------------------------------------
// Log-Int-Softmax (LogIntSoftmax::row's scalar loops give the reasoning).

inline int32_t hmax_epi32(__m256i v) {
  __m128i m = _mm_max_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  m = _mm_max_epi32(m, _mm_shuffle_epi32(m, 0x4e));
  m = _mm_max_epi32(m, _mm_shuffle_epi32(m, 0xb1));
  return _mm_cvtsi128_si32(m);
}

inline int64_t hsum_epi64(__m256i v) {
  __m128i s = _mm_add_epi64(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi64(s, _mm_unpackhi_epi64(s, s));
  return _mm_cvtsi128_si64(s);
}

// i-exp of the gap to the row's maximum over valid entries, e[0, n) (0 where not valid), and
// their sum; e[n, n rounded up to 8) set to 0. Four-lane gathers from the table, masked by
// validity (the gap of an invalid entry may lie outside the table).
inline int64_t lis_exps(const LogIntSoftmax& l, const int32_t* q, const uint8_t* valid, int n, int64_t* e) {
  const long long* tab = reinterpret_cast<const long long*>(l.exp_of_gap.data());
  constexpr int32_t kLow = std::numeric_limits<int32_t>::min();
  const __m256i zero = _mm256_setzero_si256();
  __m256i mv = _mm256_set1_epi32(kLow);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + i));
    if (valid) {
      const __m256i off = _mm256_cmpeq_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(valid + i))), zero);
      x = _mm256_blendv_epi8(x, _mm256_set1_epi32(kLow), off);
    }
    mv = _mm256_max_epi32(mv, x);
  }
  int32_t mx = hmax_epi32(mv);
  for (; i < n; ++i)
    if (!valid || valid[i]) mx = std::max(mx, q[i]);
  const __m256i mxv = _mm256_set1_epi32(mx);
  __m256i acc = zero;
  i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i gap = _mm256_sub_epi32(mxv, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + i)));
    __m256i lo, hi;
    if (valid) {
      const __m256i on = _mm256_cmpgt_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(valid + i))), zero);
      lo = _mm256_mask_i32gather_epi64(zero, tab, _mm256_castsi256_si128(gap), _mm256_cvtepi32_epi64(_mm256_castsi256_si128(on)), 8);
      hi = _mm256_mask_i32gather_epi64(zero, tab, _mm256_extracti128_si256(gap, 1), _mm256_cvtepi32_epi64(_mm256_extracti128_si256(on, 1)), 8);
    } else {
      lo = _mm256_i32gather_epi64(tab, _mm256_castsi256_si128(gap), 8);
      hi = _mm256_i32gather_epi64(tab, _mm256_extracti128_si256(gap, 1), 8);
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(e + i), lo);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(e + i + 4), hi);
    acc = _mm256_add_epi64(acc, _mm256_add_epi64(lo, hi));
  }
  int64_t sum = hsum_epi64(acc);
  for (; i < n; ++i) sum += e[i] = (!valid || valid[i]) ? tab[mx - q[i]] : 0;
  for (; i % 8; ++i) e[i] = 0;
  return sum;
}

// Codes of four e (0 ≤ e < 2^52, as 2Σ + e < 2^53 makes them) with their rows' 2Σ: r =
// ⌊(2Σ + e) / 2e⌋ by the same IEEE double operations as the scalar loop (e converted exactly
// through the bits of 2^52 + e), k from r's exponent and first mantissa bit; -1 where e ≤ 0 or
// k ≥ top. Returned as four int64 lanes. (Counting the thresholds by exact integer shifts and
// compares instead of dividing measured no faster: the division is not the bottleneck.)
inline __m256i lis_codes4(__m256i ev, __m256d two_sum, __m256i top_minus_1) {
  const __m256d magic = _mm256_set1_pd(4503599627370496.0);  // 2^52
  const __m256d ed = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(ev, _mm256_castpd_si256(magic))), magic);
  const __m256d r = _mm256_floor_pd(_mm256_div_pd(_mm256_add_pd(two_sum, ed), _mm256_add_pd(ed, ed)));
  const __m256i b = _mm256_castpd_si256(r);
  const __m256i k = _mm256_add_epi64(_mm256_sub_epi64(_mm256_srli_epi64(b, 52), _mm256_set1_epi64x(1023)),
                                     _mm256_and_si256(_mm256_srli_epi64(b, 51), _mm256_set1_epi64x(1)));
  const __m256i drop = _mm256_or_si256(_mm256_cmpgt_epi64(_mm256_set1_epi64x(1), ev), _mm256_cmpgt_epi64(k, top_minus_1));
  return _mm256_or_si256(k, drop);
}

// Eight codes (int64 lanes, each in −1..63) as eight bytes, in order.
inline uint64_t pack_codes8(__m256i k0, __m256i k1) {
  const __m256i low_dwords = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
  const __m256i d = _mm256_blend_epi32(_mm256_permutevar8x32_epi32(k0, low_dwords), _mm256_permutevar8x32_epi32(k1, low_dwords), 0xf0);
  const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(d), _mm256_extracti128_si256(d, 1));
  return static_cast<uint64_t>(_mm_cvtsi128_si64(_mm_packs_epi16(w, w)));
}

// The first min(count, 8) of eight codes (a memcpy of variable length would be a call).
inline void store_codes(int8_t* codes, uint64_t bytes, int count) {
  if (count >= 8) {
    std::memcpy(codes, &bytes, 8);
    return;
  }
  for (int b = 0; b < count; ++b) codes[b] = static_cast<int8_t>(bytes >> (8 * b));
}

constexpr int64_t kExactLimit = int64_t{1} << 53;
}  // namespace

void lis_row(const LogIntSoftmax& l, const int32_t* q, const uint8_t* valid, int n, int8_t* codes) {
  if (n <= 0) return;
  thread_local std::vector<int64_t> ev;
  int64_t* e = aligned_scratch(ev, static_cast<size_t>((n + 7) & ~7));
  const int64_t sum = lis_exps(l, q, valid, n, e);
  if (2 * sum + l.exp_of_gap[0] >= kExactLimit) return l.row_by_exp(q, valid, n, codes);
  const __m256d ts = _mm256_set1_pd(2.0 * static_cast<double>(sum));
  const __m256i top1 = _mm256_set1_epi64x((int64_t{1} << l.bits) - 1);
  for (int i = 0; i < n; i += 8) {
    const __m256i k0 = lis_codes4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(e + i)), ts, top1);
    const __m256i k1 = lis_codes4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(e + i + 4)), ts, top1);
    store_codes(codes + i, pack_codes8(k0, k1), n - i);
  }
}

void lis_rows(const LogIntSoftmax& l, const int32_t* q, const uint8_t* valid, int n_rows, int n, int8_t* codes) {
  if (n <= 0 || n_rows <= 0) return;
  if (n < 4) {  // four lanes could span more than two rows
    for (int t = 0; t < n_rows; ++t) lis_row(l, q + static_cast<size_t>(t) * n, valid, n, codes + static_cast<size_t>(t) * n);
    return;
  }
  // In phases over blocks of rows, so that no row waits on the latencies of the one before it:
  // each row's exps (dense, rows n apart) and 2Σ, then one flat pass of divisions four lanes at
  // a time, a group's lanes from at most two rows (n ≥ 4). Rows whose 2Σ + e may reach 2^53 are
  // redone by row_by_exp afterwards.
  const int block = std::max(1, std::min(n_rows, 4096 / n));
  thread_local std::vector<int64_t> E_buf;
  thread_local std::vector<double> two_sum;
  thread_local std::vector<int> exact;
  int64_t* E = aligned_scratch(E_buf, static_cast<size_t>(block) * n + 8);
  two_sum.resize(static_cast<size_t>(block) + 2);
  const __m256i top1 = _mm256_set1_epi64x((int64_t{1} << l.bits) - 1);
  const __m256i lane = _mm256_setr_epi64x(0, 1, 2, 3);
  for (int t0 = 0; t0 < n_rows; t0 += block) {
    const int nr = std::min(block, n_rows - t0);
    exact.clear();
    for (int r = 0; r < nr; ++r) {
      // Row r + 1 overwrites the zero padding row r leaves past its end.
      const int64_t sum = lis_exps(l, q + static_cast<size_t>(t0 + r) * n, valid, n, E + static_cast<size_t>(r) * n);
      two_sum[static_cast<size_t>(r)] = 2.0 * static_cast<double>(sum);
      if (2 * sum + l.exp_of_gap[0] >= kExactLimit) exact.push_back(t0 + r);
    }
    // Lanes past the last row (computed, not stored): defined values.
    two_sum[static_cast<size_t>(nr)] = two_sum[static_cast<size_t>(nr) + 1] = two_sum[static_cast<size_t>(nr) - 1];
    const int total = nr * n;
    std::fill(E + total, E + total + 8, 0);
    int r = 0, row_end = n;  // the row of the group's first lane, and where that row ends
    auto group = [&](int i) {
      const int edge = row_end - i;  // lanes of row r; the rest belong to row r + 1
      __m256d ts = _mm256_set1_pd(two_sum[static_cast<size_t>(r)]);
      if (edge < 4)
        ts = _mm256_blendv_pd(ts, _mm256_set1_pd(two_sum[static_cast<size_t>(r) + 1]),
                              _mm256_castsi256_pd(_mm256_cmpgt_epi64(lane, _mm256_set1_epi64x(edge - 1))));
      if (edge <= 4) {
        ++r;
        row_end += n;
      }
      return lis_codes4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(E + i)), ts, top1);
    };
    int8_t* out = codes + static_cast<size_t>(t0) * n;
    for (int i = 0; i < total; i += 8) {
      const __m256i k0 = group(i);
      const __m256i k1 = group(i + 4);
      store_codes(out + i, pack_codes8(k0, k1), total - i);
    }
    for (int t : exact) l.row_by_exp(q + static_cast<size_t>(t) * n, valid, n, codes + static_cast<size_t>(t) * n);
  }
}

}  // namespace qtx::rt::avx2
