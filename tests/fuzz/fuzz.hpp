#pragma once
// Each fuzz target defines LLVMFuzzerTestOneInput (libFuzzer's entry point) and
// fuzz_seeds(), valid inputs the smoke driver mutates when libFuzzer is not used.
#include <cstddef>
#include <cstdint>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
std::vector<std::vector<uint8_t>> fuzz_seeds();
