// Tree objects come from the store and the network: decoding must never crash, and
// whatever decodes is canonical (re-encoding gives the same bytes).
#include <cstdlib>

#include "libmirage/tree/tree.hpp"
#include "libmirage/util/error.hpp"
#include "tests/fuzz/fuzz.hpp"

using namespace mirage;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    tree::Tree t = tree::decode(std::span(data, size), "fuzz");
    auto again = tree::encode(t);
    if (again != std::vector<uint8_t>(data, data + size)) std::abort();
  } catch (const Error&) {
  }
  try {
    tree::decode_entry(std::span(data, size), "fuzz");
  } catch (const Error&) {
  }
  return 0;
}

std::vector<std::vector<uint8_t>> fuzz_seeds() {
  tree::Tree t;
  tree::Entry f;
  f.name = "file";
  f.size = 5;
  f.mode = 0644;
  f.chunks.push_back({util::sha256(std::string_view("hello")), 5});
  f.xattrs = {{"user.a", "1"}};
  f.link_group = "/file";
  tree::Entry d;
  d.name = "dir";
  d.kind = tree::Kind::dir;
  tree::Entry l;
  l.name = "link";
  l.kind = tree::Kind::symlink;
  l.target = "file";
  t.entries = {f, d, l};
  return {tree::encode(t), tree::encode(tree::Tree{}), tree::encode_entry(d)};
}
