// Every runtime kernel at every instruction-set level against its plain loop (ggml's
// test-backend-ops in spirit): each case builds its inputs from a fixed seed per shape, runs once
// with the kernels capped at scalar (the plain loops: the reference twins) and once at the level
// under test, and the two outputs must be the same bytes. Levels this CPU lacks are skipped with
// a visible GTEST_SKIP; QTX_MAX_ISA caps the levels further (ctest runs the suite capped, too).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "runtime/cpu_isa.h"
#include "runtime/gemm.h"
#include "runtime/int_blocks.h"
#include "runtime/int_kernels.h"

namespace qtx::rt {
void PrintTo(Isa isa, std::ostream* os) { *os << isa_name(isa); }  // names in gtest's messages
}  // namespace qtx::rt

using namespace qtx::rt;

namespace {

using Bytes = std::vector<uint8_t>;

template <typename T>
void append(Bytes& out, const std::vector<T>& v) {
  const size_t at = out.size();
  out.resize(at + v.size() * sizeof(T));
  if (!v.empty()) std::memcpy(out.data() + at, v.data(), v.size() * sizeof(T));
}

// One kernel: its shapes (as text, for the failure message) and a run that builds the inputs of
// shape i from a fixed seed and returns the kernel's outputs as bytes.
struct KernelCase {
  std::string name;
  std::vector<std::vector<int>> shapes;
  std::function<Bytes(const std::vector<int>&)> run;
};

std::string shape_text(const std::vector<int>& s) {
  std::string t;
  for (int v : s) t += (t.empty() ? "" : "x") + std::to_string(v);
  return t;
}

std::vector<uint8_t> random_codes(std::mt19937& rng, size_t n) {
  std::vector<uint8_t> v(n);
  for (auto& x : v) x = static_cast<uint8_t>(rng());
  return v;
}

std::vector<KernelCase> kernel_cases() {
  std::vector<KernelCase> cases;

  // M×N×K; weights: 8-bit full range (the products vpmaddubsw would saturate, every value at the
  // extremes in the last shape) and 4-bit; za ≠ 0.
  cases.push_back({"Int8Gemm", {{1, 1, 1}, {7, 5, 3}, {17, 160, 160}, {64, 17, 33}, {100, 48, 640}, {3, 640, 17}, {64, 64, 64}},
                   [](const std::vector<int>& s) {
                     Bytes out;
                     for (int bits : {8, 4}) {
                       std::mt19937 rng(static_cast<unsigned>(s[0] * 131 + s[1] * 7 + s[2] + bits));
                       const int M = s[0], N = s[1], K = s[2], top = (1 << (bits - 1)) - 1;
                       std::vector<int8_t> w(static_cast<size_t>(N) * K);
                       for (auto& x : w) x = static_cast<int8_t>(static_cast<int>(rng() % (2 * top + 2)) - top - 1);
                       std::vector<uint8_t> a = random_codes(rng, static_cast<size_t>(M) * K);
                       if (M == 64 && N == 64) {  // extremes: 255 against −128 and 127
                         for (auto& x : a) x = 255;
                         for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<int8_t>((i / 3) % 2 ? top : -top - 1);
                       }
                       Int8Gemm g(w.data(), N, K, Kernels::Fast);
                       std::vector<int32_t> c(static_cast<size_t>(M) * N);
                       g.run(a.data(), M, 7, c.data());
                       append(out, c);
                     }
                     return out;
                   }});

  // N × bias rows; rows() (the float placement where it is on), rows_integer() and rows32().
  cases.push_back({"ChannelRequant", {{1, 1}, {15, 1}, {16, 1}, {17, 3}, {160, 1}, {192, 17}, {640, 1}, {200, 2}},
                   [](const std::vector<int>& s) {
                     std::mt19937 rng(static_cast<unsigned>(s[0] * 3 + s[1]));
                     const int N = s[0], br = s[1], M = 37;
                     Bytes out;
                     for (int variant = 0; variant < 3; ++variant) {
                       std::vector<double> scale(static_cast<size_t>(N)), bias(static_cast<size_t>(N) * br);
                       for (auto& x : scale) x = std::uniform_real_distribution<double>(1e-6, 3e-4)(rng);
                       for (auto& x : bias) x = std::uniform_real_distribution<double>(-2, 2)(rng);
                       std::vector<int64_t> offset(static_cast<size_t>(N));
                       for (auto& x : offset) x = static_cast<int64_t>(rng() % 20001) - 10000;
                       // variant 0: codes 0..255 (placed); 1: a narrower code range; 2: an unknown accumulator bound.
                       const ChannelRequant r = ChannelRequant::make(scale, bias, br, 0.02, variant == 1 ? 3 : 128, variant == 1 ? 0 : 0,
                                                                     variant == 1 ? 15 : 255, offset, variant == 2 ? 0 : (1 << 22));
                       std::vector<int32_t> acc(static_cast<size_t>(M) * N);
                       std::uniform_int_distribution<int32_t> d(variant == 2 ? -(1 << 28) : -(1 << 22), variant == 2 ? (1 << 28) : (1 << 22));
                       for (auto& x : acc) x = d(rng);
                       std::vector<uint8_t> codes(acc.size()), integer(acc.size());
                       std::vector<int32_t> wide(acc.size());
                       r.rows(acc.data(), M, codes.data());
                       r.rows_integer(acc.data(), M, integer.data());
                       r.rows32(acc.data(), M, wide.data());
                       append(out, codes);
                       append(out, integer);
                       append(out, wide);
                     }
                     return out;
                   }});

  cases.push_back({"ResidualRequant", {{1}, {16}, {17}, {160}, {192}, {640}, {771}}, [](const std::vector<int>& s) {
                     std::mt19937 rng(static_cast<unsigned>(s[0]));
                     const int N = s[0], M = 29;
                     std::vector<double> scale(static_cast<size_t>(N)), bias(static_cast<size_t>(N));
                     for (auto& x : scale) x = std::uniform_real_distribution<double>(1e-6, 3e-4)(rng);
                     for (auto& x : bias) x = std::uniform_real_distribution<double>(-2, 2)(rng);
                     const ResidualRequant r = ResidualRequant::make(scale, bias, QParams{0.05, 131, 0, 255}, QParams{0.04, 120, 0, 255}, {}, 1 << 22);
                     std::vector<int32_t> acc(static_cast<size_t>(M) * N);
                     for (auto& x : acc) x = std::uniform_int_distribution<int32_t>(-(1 << 22), 1 << 22)(rng);
                     const std::vector<uint8_t> h = random_codes(rng, acc.size());
                     std::vector<uint8_t> codes(acc.size()), integer(acc.size());
                     r.rows(acc.data(), h.data(), M, codes.data());
                     r.rows_integer(acc.data(), h.data(), M, integer.data());
                     Bytes out;
                     append(out, codes);
                     append(out, integer);
                     return out;
                   }});

  cases.push_back({"RequantToCodes", {{1}, {15}, {16}, {17}, {1000}, {40000}}, [](const std::vector<int>& s) {
                     std::mt19937 rng(static_cast<unsigned>(s[0]));
                     std::vector<int32_t> in(static_cast<size_t>(s[0]));
                     for (auto& x : in) x = static_cast<int32_t>(rng());
                     std::vector<uint8_t> out(in.size());
                     requant_to_codes(in.data(), in.size(), Requant::from_real(3.7e-7), QParams{0.1, 100, 0, 255}, out.data());
                     return out;
                   }});

  // Channels × PTF exponents K: IntLayerNormSite::rows (tables, sums, root, output step).
  cases.push_back({"LayerNorm", {{16, 0}, {17, 3}, {160, 3}, {192, 1}, {200, 7}, {256, 3}, {768, 2}}, [](const std::vector<int>& s) {
                     std::mt19937 rng(static_cast<unsigned>(s[0] * 10 + s[1]));
                     const int C = s[0], K = s[1], M = 9;
                     std::vector<int> alpha(static_cast<size_t>(C));
                     std::vector<float> gamma(static_cast<size_t>(C)), beta(static_cast<size_t>(C));
                     for (int c = 0; c < C; ++c) {
                       alpha[static_cast<size_t>(c)] = static_cast<int>(rng() % static_cast<uint32_t>(K + 1));
                       gamma[static_cast<size_t>(c)] = 0.5f + static_cast<float>(rng() % 1000) / 1000.0f;
                       beta[static_cast<size_t>(c)] = static_cast<float>(static_cast<int>(rng() % 200) - 100) / 200.0f;
                     }
                     const IntLayerNormSite site =
                         IntLayerNormSite::make(alpha, K, QParams{0.05, 131, 0, 255}, QParams{0.011, 97, 0, 255}, gamma, beta, QParams{0.03, 120, 0, 255});
                     const std::vector<uint8_t> h = random_codes(rng, static_cast<size_t>(M) * C);
                     std::vector<uint8_t> out(h.size());
                     site.rows(h.data(), M, out.data());
                     return out;
                   }});

  // Rows × length × bits: LogIntSoftmax::rows (short rows in phases) and row() with padding.
  cases.push_back({"LogIntSoftmax", {{1, 1, 4}, {17, 17, 4}, {64, 17, 8}, {3, 31, 4}, {8, 128, 8}, {2, 197, 4}}, [](const std::vector<int>& s) {
                     std::mt19937 rng(static_cast<unsigned>(s[0] * 1000 + s[1] + s[2]));
                     const int rows = s[0], n = s[1];
                     const LogIntSoftmax lis = LogIntSoftmax::make(IntExp::for_scale(0.03), 255, s[2]);
                     std::vector<int32_t> q(static_cast<size_t>(rows) * n);
                     for (auto& x : q) x = -128 + static_cast<int32_t>(rng() % 256);
                     std::vector<uint8_t> valid(static_cast<size_t>(n), 1);
                     for (int j = n / 2; j < n; j += 3) valid[static_cast<size_t>(j)] = 0;
                     std::vector<int8_t> all(q.size()), masked(q.size());
                     lis.rows(q.data(), nullptr, rows, n, all.data());
                     lis.rows(q.data(), valid.data(), rows, n, masked.data());
                     Bytes out;
                     append(out, all);
                     append(out, masked);
                     return out;
                   }});

  // dh × T × Tq × kmax: qk_scores and av_log2.
  cases.push_back({"Attention", {{64, 17, 17, 15}, {64, 17, 1, 15}, {64, 128, 128, 20}, {64, 50, 9, 15}, {32, 37, 37, 15}, {8, 9, 9, 15},
                                 {80, 31, 31, 20}, {64, 197, 197, 15}, {6, 40, 40, 7}},
                   [](const std::vector<int>& s) {
                     const int dh = s[0], T = s[1], Tq = s[2], kmax = s[3], ld = 3 * dh;
                     std::mt19937 rng(static_cast<unsigned>(dh * 7 + T * 3 + Tq + kmax));
                     const std::vector<uint8_t> q = random_codes(rng, static_cast<size_t>(T) * ld), k = random_codes(rng, q.size()),
                                                v = random_codes(rng, q.size());
                     std::vector<int32_t> S(static_cast<size_t>(Tq) * T), ctx(static_cast<size_t>(Tq) * dh);
                     qk_scores(q.data(), 128, k.data(), 120, Tq, T, dh, ld, S.data());
                     std::vector<int8_t> codes(S.size());
                     for (auto& c : codes) c = static_cast<int8_t>(static_cast<int>(rng() % static_cast<uint32_t>(kmax + 3)) - 1);
                     av_log2(codes.data(), v.data(), 119, Tq, T, dh, ld, kmax, ctx.data(), dh);
                     Bytes out;
                     append(out, S);
                     append(out, ctx);
                     return out;
                   }});

  // Channels: IntElementwise::rows (GELU: the polynomial placement where it is on) and rows_by_table.
  cases.push_back({"Elementwise", {{1}, {16}, {37}, {160}, {640}, {3072}}, [](const std::vector<int>& s) {
                     std::mt19937 rng(static_cast<unsigned>(s[0]));
                     const int N = s[0], M = 11;
                     IntLinear fc1;
                     fc1.N = N;
                     for (int c = 0; c < N; ++c) {
                       fc1.acc_scale.push_back(std::uniform_real_distribution<double>(5e-6, 5e-5)(rng));
                       fc1.bias.push_back(std::uniform_real_distribution<double>(-0.5, 0.5)(rng));
                     }
                     const QParams o{0.021, 9, 0, 255};
                     const IntElementwise e = IntElementwise::make(fc1, activation_fn("gelu"), o, -8.0, (o.qmax - o.zero + 1) * o.scale);
                     std::vector<int32_t> acc(static_cast<size_t>(M) * N);
                     for (auto& a : acc) a = std::uniform_int_distribution<int32_t>(-400000, 400000)(rng);
                     acc[0] = INT32_MIN + 1;
                     std::vector<uint8_t> poly(acc.size()), table(acc.size());
                     e.rows(acc.data(), M, poly.data());
                     e.rows_by_table(acc.data(), M, table.data());
                     Bytes out;
                     append(out, poly);
                     append(out, table);
                     return out;
                   }});

  cases.push_back({"CodeTable", {{1}, {63}, {64}, {65}, {1000}, {100003}}, [](const std::vector<int>& s) {
                     std::mt19937 rng(static_cast<unsigned>(s[0]));
                     const std::vector<uint8_t> t = table_between(QParams{0.05, 131, 0, 255}, QParams{0.011, 97, 0, 255});
                     std::vector<uint8_t> in = random_codes(rng, static_cast<size_t>(s[0])), out(in.size());
                     apply_table(t, in.data(), in.size(), out.data());
                     return out;
                   }});
  return cases;
}

class KernelsAtEveryIsa : public ::testing::TestWithParam<Isa> {
 protected:
  void TearDown() override { set_max_isa(Isa::Avx512Vnni); }  // back to the CPU's (and QTX_MAX_ISA's) level
};

TEST_P(KernelsAtEveryIsa, MatchPlainLoopsBitForBit) {
  const Isa level = GetParam();
  if (level > cpu_isa()) GTEST_SKIP() << "this CPU has no " << isa_name(level) << " (it has " << isa_name(cpu_isa()) << ")";
  if (level > max_isa_from_env()) GTEST_SKIP() << isa_name(level) << " is above QTX_MAX_ISA";
  int checked = 0;
  for (const KernelCase& kc : kernel_cases())
    for (const auto& shape : kc.shapes) {
      SCOPED_TRACE(kc.name + " shape " + shape_text(shape) + " at " + isa_name(level));
      set_max_isa(Isa::Scalar);
      const Bytes want = kc.run(shape);
      set_max_isa(level);
      ASSERT_EQ(active_isa(), level);
      const Bytes got = kc.run(shape);
      ASSERT_EQ(want.size(), got.size());
      size_t first = 0;
      while (first < want.size() && want[first] == got[first]) ++first;
      ASSERT_EQ(first, want.size()) << "first differing byte " << first << " of " << want.size();
      ++checked;
    }
  std::printf("[ isa %s ] %d kernel shapes equal to the plain loops\n", isa_name(level), checked);
}

INSTANTIATE_TEST_SUITE_P(Levels, KernelsAtEveryIsa, ::testing::Values(Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni),
                         [](const ::testing::TestParamInfo<Isa>& i) { return std::string(isa_name(i.param)); });

TEST(CpuIsa, NamesRoundTripAndCapsNeverRaiseTheLevel) {
  for (Isa i : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni}) EXPECT_EQ(parse_isa(isa_name(i)), i);
  EXPECT_FALSE(parse_isa("avx1024").has_value());
  EXPECT_LE(active_isa(), cpu_isa());
  set_max_isa(Isa::Scalar);
  EXPECT_EQ(active_isa(), Isa::Scalar);
  set_max_isa(Isa::Avx512Vnni);
  EXPECT_EQ(active_isa(), max_isa_from_env());
  EXPECT_EQ(runnable_isas().back(), cpu_isa());
  std::printf("[ isa ] %s\n", isa_summary().c_str());
}

}  // namespace
