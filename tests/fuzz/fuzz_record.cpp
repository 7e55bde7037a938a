// Chunk records come from uploads and from packs on disk: parsing and verifying must
// never crash or read out of bounds.
#include "libmirage/store/repository.hpp"
#include "libmirage/util/error.hpp"
#include "tests/fuzz/fuzz.hpp"

using namespace mirage;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    store::verify_upload(std::span(data, size));
  } catch (const Error&) {
  }
  try {  // as the store's owner uploads: parsed and framing checked, nothing decoded
    store::verify_upload(std::span(data, size), store::UploadCheck::framing);
  } catch (const Error&) {
  }
  return 0;
}

std::vector<std::vector<uint8_t>> fuzz_seeds() {
  std::vector<uint8_t> blob;
  std::string text(3000, 'z');
  auto bytes = std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size());
  store::append_plain(blob, util::sha256(text), bytes, 3);
  std::string small = "raw";
  store::append_plain(blob, util::sha256(small), std::span(reinterpret_cast<const uint8_t*>(small.data()), 3), 3);
  return {blob};
}
