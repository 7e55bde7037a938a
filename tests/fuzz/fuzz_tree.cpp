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
  // A split directory's index, and joining it to pieces made from the same bytes.
  try {
    auto index = tree::decode_index(std::span(data, size), "fuzz");
    if (index.size() < 2) std::abort();
    std::vector<tree::Tree> pieces;
    for (const auto& p : index) {
      tree::Tree piece;
      tree::Entry e;
      e.name = p.first;
      piece.entries.push_back(e);
      pieces.push_back(piece);
    }
    tree::join(index, std::move(pieces), "fuzz");
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
  tree::Tree big;
  for (int i = 0; i < 9000; ++i) {
    tree::Entry e = f;
    e.name = "f" + std::to_string(i);
    big.entries.push_back(e);
  }
  auto split = tree::encode_dir(big);
  return {tree::encode(t), tree::encode(tree::Tree{}), tree::encode_entry(d), split.top.data};
}
