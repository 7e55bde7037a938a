#include "libmirage/chunk/fastcdc.hpp"

#include <bit>
#include <stdexcept>

namespace mirage::chunk {

namespace {

constexpr std::array<uint64_t, 256> make_gear_table() {
  std::array<uint64_t, 256> table{};
  uint64_t state = 0x6d69726167650001ULL;  // "mirage" + 1
  for (auto& entry : table) {
    state += 0x9e3779b97f4a7c15ULL;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    entry = z ^ (z >> 31);
  }
  return table;
}

constexpr auto k_gear = make_gear_table();

constexpr uint64_t top_bits(int n) { return n <= 0 ? 0 : ~uint64_t(0) << (64 - n); }

}  // namespace

uint64_t gear(uint8_t b) { return k_gear[b]; }

uint64_t window_hash(std::span<const uint8_t> window) {
  uint64_t h = 0;
  for (uint8_t b : window) h = (h << 1) + k_gear[b];
  return h;
}

Chunker::Chunker(Params params) : m_params(params) {
  if (!std::has_single_bit(params.avg_size) || params.min_size < 64 || params.min_size > params.avg_size ||
      params.avg_size > params.max_size)
    throw std::invalid_argument("chunker: need 64 <= min <= avg <= max and avg a power of two");
  int bits = std::countr_zero(params.avg_size);
  m_mask_small = top_bits(bits + 2);
  m_mask_large = top_bits(bits - 2);
}

size_t Chunker::cut(std::span<const uint8_t> data) const {
  const size_t n = data.size() < m_params.max_size ? data.size() : m_params.max_size;
  if (n <= m_params.min_size) return n;
  const uint8_t* p = data.data();
  uint64_t h = 0;
  size_t i = m_params.min_size - 64;
  for (; i < m_params.min_size; ++i) h = (h << 1) + k_gear[p[i]];
  const size_t normal = m_params.avg_size < n ? m_params.avg_size : n;
  for (; i < normal; ++i) {
    h = (h << 1) + k_gear[p[i]];
    if (!(h & m_mask_small)) return i + 1;
  }
  for (; i < n; ++i) {
    h = (h << 1) + k_gear[p[i]];
    if (!(h & m_mask_large)) return i + 1;
  }
  return n;
}

}  // namespace mirage::chunk
