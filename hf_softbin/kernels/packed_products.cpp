// Products with packed matrices, straight from the stored sign bits and PQ codes (keep-packed models).
//
// sign_linear: y = ((x * col_scale) @ sign(W).T) * row_scale + bias, W stored as one bit per weight, row by row,
// eight weights a byte, least significant bit first (bit set: +1). For each input vector, a table holds, for every
// byte of the row (8 columns), the signed sums of those 8 inputs under all 256 bit patterns; an output is then one
// table entry per byte of its row (T-MAC / bitnet.cpp's lookup tables, in float so results match the float product).
//
// pq_linear / pq_sign_linear: y = x @ decode(codes, codebooks).T + bias for product-quantized matrices. A table holds
// the dot products of each input sub-vector with every codeword of its sub-space (codebooks in float, or as sign bits
// and one scale per codeword); an output is one table entry per code of its row. Each sub-space's table has 256
// entries whatever the codebook size: a code past the codebook (a damaged file) reads NaN, never outside the table.
//
// Temporaries: one table per input vector (256 floats per 8 input columns, or m x K floats), never anything of the
// size of the matrix. Rows are split across PyTorch's intra-op threads. Plain C++ for any CPU: the compiler
// vectorizes the table builds; the lookups are scalar loads, which is what gathers cost on most CPUs anyway.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

namespace {

// Rows are split across threads only in tasks of at least this much work (scalar table lookups, or SIMD additions of
// a few floats): an OpenMP region costs microseconds, and far more while other processes hold the cores.
constexpr int64_t kTaskWork = 1 << 16;
constexpr int64_t kPatterns = 256;  // bit patterns of a byte, and values of a PQ code

// table[g * 256 + b] = sum over k < 8 of (bit k of b ? +v : -v), v = x[8g + k] * scale[8g + k] (0 past cols).
void build_sign_tables(const float* x, const float* col_scale, int64_t cols, float* table) {
  const int64_t groups = (cols + 7) / 8;
  for (int64_t g = 0; g < groups; ++g) {
    float v[8];
    for (int64_t k = 0; k < 8; ++k) {
      const int64_t j = 8 * g + k;
      v[k] = j < cols ? (col_scale ? x[j] * col_scale[j] : x[j]) : 0.f;
    }
    float low[16], high[16];  // the signed sums of inputs 0-3 and 4-7 under each 4-bit pattern
    low[0] = -((v[0] + v[1]) + (v[2] + v[3]));
    high[0] = -((v[4] + v[5]) + (v[6] + v[7]));
    for (int b = 1; b < 16; ++b) {
      const int k = __builtin_ctz(b);  // flip the lowest set bit's input from - to +
      low[b] = low[b & (b - 1)] + 2.f * v[k];
      high[b] = high[b & (b - 1)] + 2.f * v[4 + k];
    }
    float* t = table + g * kPatterns;
    for (int h = 0; h < 16; ++h)
      for (int l = 0; l < 16; ++l) t[h * 16 + l] = high[h] + low[l];
  }
}

// sum over g < count of table[g * stride + index[g]], four independent partial sums.
inline float sum_lookups(const float* table, int64_t stride, const uint8_t* index, int64_t count) {
  float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;
  int64_t g = 0;
  for (; g + 4 <= count; g += 4, table += 4 * stride) {
    a0 += table[index[g]];
    a1 += table[stride + index[g + 1]];
    a2 += table[2 * stride + index[g + 2]];
    a3 += table[3 * stride + index[g + 3]];
  }
  for (; g < count; ++g, table += stride) a0 += table[index[g]];
  return (a0 + a1) + (a2 + a3);
}

inline float dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) acc[k] += a[j + k] * b[j + k];
  float total = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; j < n; ++j) total += a[j] * b[j];
  return total;
}

const float* float_data(const std::optional<at::Tensor>& tensor, int64_t numel, const char* name) {
  if (!tensor.has_value()) return nullptr;
  TORCH_CHECK(tensor->scalar_type() == at::kFloat && tensor->is_contiguous(), name,
              " must be a contiguous float32 tensor");
  TORCH_CHECK(tensor->numel() == numel, name, " has ", tensor->numel(), " elements, expected ", numel);
  return tensor->data_ptr<float>();
}

void check_operands(const at::Tensor& x, const at::Tensor& index, const at::Tensor& out) {
  TORCH_CHECK(x.device().is_cpu() && index.device().is_cpu() && out.device().is_cpu(),
              "hf_softbin kernels run on CPU");
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.stride(1) == 1,
              "x must be a (n, cols) float32 tensor with contiguous rows");
  TORCH_CHECK(index.dim() == 2 && index.scalar_type() == at::kByte && index.is_contiguous(),
              "bits/codes must be a contiguous (rows, k) uint8 tensor");
  TORCH_CHECK(out.scalar_type() == at::kFloat && out.is_contiguous() && out.dim() == 2 && out.size(0) == x.size(0) &&
                  out.size(1) == index.size(0),
              "out must be a contiguous (n, rows) float32 tensor");
}

// What follows each sum: a scale per row (or one for all rows) and a bias per row or per (vector, row).
struct Epilogue {
  const float* row_scale = nullptr;
  bool one_scale = false;
  const float* bias = nullptr;
  int64_t bias_stride = 0;  // between the bias rows of consecutive vectors; 0 when one bias row serves all

  float operator()(float value, int64_t t, int64_t r) const {
    if (row_scale) value *= row_scale[one_scale ? 0 : r];
    return bias ? value + bias[t * bias_stride + r] : value;
  }
};

Epilogue make_epilogue(const std::optional<at::Tensor>& row_scale, const std::optional<at::Tensor>& bias, int64_t n,
                       int64_t rows) {
  Epilogue epilogue;
  if (row_scale.has_value()) {
    epilogue.one_scale = row_scale->numel() == 1;
    epilogue.row_scale = float_data(row_scale, epilogue.one_scale ? 1 : rows, "row_scale");
  }
  if (bias.has_value()) {
    TORCH_CHECK(bias->scalar_type() == at::kFloat && bias->stride(-1) == 1 && bias->size(-1) == rows &&
                    (bias->dim() == 1 || (bias->dim() == 2 && bias->size(0) == n)),
                "bias must be a float32 (rows,) or (n, rows) tensor with contiguous rows");
    epilogue.bias = bias->data_ptr<float>();
    epilogue.bias_stride = bias->dim() == 2 ? bias->stride(0) : 0;
  }
  return epilogue;
}

// out[t, r] = epilogue(sum_g table_t[g * 256 + index[r, g]]), one table per vector, built by `build` (entries it
// leaves alone stay NaN).
template <typename Build>
void lookup_rows(const at::Tensor& index, int64_t n, const Epilogue& epilogue, at::Tensor& out, Build build) {
  const int64_t rows = index.size(0), count = index.size(1);
  const uint8_t* indices = index.data_ptr<uint8_t>();
  float* outputs = out.data_ptr<float>();
  std::vector<float> table(count * kPatterns, std::numeric_limits<float>::quiet_NaN());
  for (int64_t t = 0; t < n; ++t) {
    build(t, table.data());
    const float* tab = table.data();
    at::parallel_for(0, rows, std::max<int64_t>(1, kTaskWork / count), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r)
        outputs[t * rows + r] = epilogue(sum_lookups(tab, kPatterns, indices + r * count, count), t, r);
    });
  }
}

// V vectors at once, for batches: nibble tables tab[(q * 16 + p) * V + v] = sum over k < 4 of (bit k of p ? +u : -u),
// u = input v's column 4q + k (scaled). The V sums of a row then share every table index: each lookup adds V
// contiguous floats, which the compiler vectorizes. 64 floats a column for V = 16, a quarter of byte tables.
template <int V>
void sign_rows_batched(const float* x, int64_t x_stride, const float* col_scale, int64_t cols, int64_t t0, int64_t nv,
                       const at::Tensor& bits, const Epilogue& epilogue, float* table, float* outputs) {
  const int64_t rows = bits.size(0), width = bits.size(1), quads = 2 * width;
  for (int64_t q = 0; q < quads; ++q) {
    float u[4][V];
    for (int k = 0; k < 4; ++k) {
      const int64_t j = 4 * q + k;
      for (int v = 0; v < V; ++v)
        u[k][v] = v < nv && j < cols ? x[(t0 + v) * x_stride + j] * (col_scale ? col_scale[j] : 1.f) : 0.f;
    }
    float* tq = table + q * 16 * V;
    for (int v = 0; v < V; ++v) tq[v] = -((u[0][v] + u[1][v]) + (u[2][v] + u[3][v]));
    for (int p = 1; p < 16; ++p) {
      const float* from = tq + (p & (p - 1)) * V;
      const float* add = u[__builtin_ctz(p)];
      for (int v = 0; v < V; ++v) tq[p * V + v] = from[v] + 2.f * add[v];
    }
  }
  const uint8_t* indices = bits.data_ptr<uint8_t>();
  at::parallel_for(0, rows, std::max<int64_t>(1, kTaskWork / (width * V / 2)), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const uint8_t* b = indices + r * width;
      float acc[V] = {};
      const float* tq = table;
      for (int64_t g = 0; g < width; ++g, tq += 32 * V) {
        const unsigned byte = b[g];
        const float* low = tq + (byte & 15) * V;
        const float* high = tq + 16 * V + (byte >> 4) * V;
        for (int v = 0; v < V; ++v) acc[v] += low[v] + high[v];
      }
      for (int v = 0; v < nv; ++v) outputs[(t0 + v) * rows + r] = epilogue(acc[v], t0 + v, r);
    }
  });
}

void sign_linear(const at::Tensor& x, const at::Tensor& bits, const std::optional<at::Tensor>& col_scale,
                 const std::optional<at::Tensor>& row_scale, const std::optional<at::Tensor>& bias, at::Tensor& out) {
  check_operands(x, bits, out);
  const int64_t n = x.size(0), cols = x.size(1), rows = bits.size(0);
  TORCH_CHECK(bits.size(1) == (cols + 7) / 8, "bits has ", bits.size(1), " bytes a row, ", cols, " columns need ",
              (cols + 7) / 8);
  const float* cs = float_data(col_scale, cols, "col_scale");
  const Epilogue epilogue = make_epilogue(row_scale, bias, n, rows);
  const float* inputs = x.data_ptr<float>();
  const int64_t x_stride = x.stride(0);
  if (n == 1) {  // one vector: byte tables, one lookup per 8 columns
    lookup_rows(bits, 1, epilogue, out, [&](int64_t, float* table) { build_sign_tables(inputs, cs, cols, table); });
    return;
  }
  std::vector<float> buffer(2 * bits.size(1) * 16 * 16);  // nibble tables of up to 16 vectors
  float* table = buffer.data();
  float* outputs = out.data_ptr<float>();
  for (int64_t t0 = 0; t0 < n;) {
    const int64_t left = n - t0;
    if (left > 8) {
      const int64_t count = std::min<int64_t>(left, 16);
      sign_rows_batched<16>(inputs, x_stride, cs, cols, t0, count, bits, epilogue, table, outputs);
      t0 += 16;
    } else if (left > 4) {
      sign_rows_batched<8>(inputs, x_stride, cs, cols, t0, left, bits, epilogue, table, outputs);
      t0 += 8;
    } else {
      sign_rows_batched<4>(inputs, x_stride, cs, cols, t0, left, bits, epilogue, table, outputs);
      t0 += 4;
    }
  }
}

void pq_linear(const at::Tensor& x, const at::Tensor& codes, const at::Tensor& codebooks,
               const std::optional<at::Tensor>& bias, at::Tensor& out) {
  check_operands(x, codes, out);
  TORCH_CHECK(codebooks.dim() == 3 && codebooks.scalar_type() == at::kFloat && codebooks.is_contiguous(),
              "codebooks must be a contiguous (m, K, d) float32 tensor");
  const int64_t m = codebooks.size(0), k = codebooks.size(1), d = codebooks.size(2), cols = x.size(1);
  TORCH_CHECK(codes.size(1) == m && m * d == cols && k <= kPatterns, "codes (rows, ", codes.size(1),
              ") and codebooks (", m, ", ", k, ", ", d, ") do not fit ", cols, " input columns");
  const Epilogue epilogue = make_epilogue(std::nullopt, bias, x.size(0), codes.size(0));
  const float* inputs = x.data_ptr<float>();
  const int64_t x_stride = x.stride(0);
  const float* words = codebooks.data_ptr<float>();
  lookup_rows(codes, x.size(0), epilogue, out, [&](int64_t t, float* table) {
    for (int64_t s = 0; s < m; ++s)
      for (int64_t c = 0; c < k; ++c)
        table[s * kPatterns + c] = dot(inputs + t * x_stride + s * d, words + (s * k + c) * d, d);
  });
}

void pq_sign_linear(const at::Tensor& x, const at::Tensor& codes, const at::Tensor& codebook_bits,
                    const at::Tensor& codebook_scale, int64_t codebook_size, const std::optional<at::Tensor>& bias,
                    at::Tensor& out) {
  check_operands(x, codes, out);
  const int64_t m = codes.size(1), k = codebook_size, cols = x.size(1), d = cols / m;
  TORCH_CHECK(d * m == cols && k <= kPatterns && codebook_bits.dim() == 2 && codebook_bits.size(0) == m * k &&
                  codebook_bits.size(1) == (d + 7) / 8 && codebook_bits.scalar_type() == at::kByte &&
                  codebook_bits.is_contiguous(),
              "codebook_bits must be a contiguous (m * K, ceil(d / 8)) uint8 tensor for ", m, " sub-spaces of ", d,
              " columns, K <= 256");
  const float* scale = float_data(codebook_scale, m * k, "codebook_scale");
  const Epilogue epilogue = make_epilogue(std::nullopt, bias, x.size(0), codes.size(0));
  const float* inputs = x.data_ptr<float>();
  const int64_t x_stride = x.stride(0);
  const uint8_t* word_bits = codebook_bits.data_ptr<uint8_t>();
  const int64_t width = codebook_bits.size(1);
  std::vector<float> signs(width * kPatterns);
  lookup_rows(codes, x.size(0), epilogue, out, [&](int64_t t, float* table) {
    for (int64_t s = 0; s < m; ++s) {
      build_sign_tables(inputs + t * x_stride + s * d, nullptr, d, signs.data());
      for (int64_t c = 0; c < k; ++c) {
        const int64_t word = s * k + c;
        table[s * kPatterns + c] = scale[word] * sum_lookups(signs.data(), kPatterns, word_bits + word * width, width);
      }
    }
  });
}

}  // namespace

TORCH_LIBRARY(hf_softbin, m) {
  m.def("sign_linear(Tensor x, Tensor bits, Tensor? col_scale, Tensor? row_scale, Tensor? bias, Tensor(a!) out) "
        "-> ()");
  m.def("pq_linear(Tensor x, Tensor codes, Tensor codebooks, Tensor? bias, Tensor(a!) out) -> ()");
  m.def("pq_sign_linear(Tensor x, Tensor codes, Tensor codebook_bits, Tensor codebook_scale, int codebook_size, "
        "Tensor? bias, Tensor(a!) out) -> ()");
}

TORCH_LIBRARY_IMPL(hf_softbin, CPU, m) {
  m.impl("sign_linear", &sign_linear);
  m.impl("pq_linear", &pq_linear);
  m.impl("pq_sign_linear", &pq_sign_linear);
}
