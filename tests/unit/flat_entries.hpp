#pragma once
// Tree entries for plan tests: a directory, a 10-byte file whose one chunk is named by
// `content` (equal content, equal chunk), and the op a plan has for a path.
#include <string>

#include "libmirage/layer/plan.hpp"

namespace mirage::test {

inline tree::Entry dir_entry(int64_t mtime = 1) {
  tree::Entry e;
  e.kind = tree::Kind::dir;
  e.mode = 0755;
  e.mtime_ns = mtime;
  return e;
}

inline tree::Entry file_entry(uint8_t content, int64_t mtime = 1) {
  tree::Entry e;
  e.kind = tree::Kind::file;
  e.mode = 0644;
  e.size = 10;
  e.mtime_ns = mtime;
  util::Digest d;
  d.bytes.fill(content);
  e.chunks = {{d, 10}};
  return e;
}

inline layer::Image image_of(layer::Flat f) {
  layer::Image img;
  img.entries = std::move(f);
  return img;
}

inline const layer::Op* op_for(const layer::Plan& p, const std::string& path) {
  for (const auto& op : p.ops)
    if (op.path == path) return &op;
  return nullptr;
}

}  // namespace mirage::test
