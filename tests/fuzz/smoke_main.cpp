// Runs a fuzz target without libFuzzer: its seeds, then bounded random mutations of
// them (bit flips, truncations, insertions, splices). A crash or sanitizer report
// fails the test. Usage: fuzz-smoke-X [ITERATIONS] [CORPUS_FILE...]
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>

#include "tests/fuzz/fuzz.hpp"

int main(int argc, char** argv) {
  long iterations = argc > 1 ? std::atol(argv[1]) : 20000;
  auto seeds = fuzz_seeds();
  for (int i = 2; i < argc; ++i) {
    std::ifstream in(argv[i], std::ios::binary);
    seeds.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  for (const auto& s : seeds) LLVMFuzzerTestOneInput(s.data(), s.size());
  std::mt19937_64 rng(12345);
  for (long n = 0; n < iterations; ++n) {
    std::vector<uint8_t> x = seeds[rng() % seeds.size()];
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      switch (rng() % 5) {
        case 0:
          if (!x.empty()) x[rng() % x.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
          break;
        case 1:
          if (!x.empty()) x.resize(rng() % x.size());
          break;
        case 2:
          x.insert(x.begin() + static_cast<long>(x.empty() ? 0 : rng() % x.size()), static_cast<uint8_t>(rng()));
          break;
        case 3:
          if (!x.empty()) x[rng() % x.size()] = static_cast<uint8_t>(rng() % 3 == 0 ? 0xff : rng());
          break;
        default: {
          const auto& other = seeds[rng() % seeds.size()];
          if (!other.empty() && !x.empty()) {
            size_t at = rng() % x.size(), from = rng() % other.size();
            x.resize(at);
            x.insert(x.end(), other.begin() + static_cast<long>(from), other.end());
          }
        }
      }
    }
    LLVMFuzzerTestOneInput(x.data(), x.size());
  }
  std::printf("%ld mutated inputs, no crash\n", iterations);
  return 0;
}
