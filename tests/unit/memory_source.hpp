#pragma once
// Snapshot objects in memory for the unit tests of what reads them (browse, restore,
// streaming restore): trees and file contents stored as plain records.
#include <atomic>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "libmirage/materialize/restorer.hpp"
#include "libmirage/store/record.hpp"
#include "libmirage/tree/tree.hpp"
#include "libmirage/util/digest.hpp"

namespace mirage::testing {

using tree::Entry;
using tree::Kind;

/// Objects in memory, counting the ids asked for (what a walk cost).
class MemorySource : public materialize::ObjectSource {
 public:
  util::Digest put(const std::string& plain) {
    auto id = util::sha256(plain);
    m_plain[id] = plain;
    return id;
  }
  std::vector<uint8_t> records(std::span<const util::Digest> ids) override {
    std::vector<uint8_t> out;
    for (const auto& id : ids) {
      asked++;
      auto it = m_plain.find(id);
      if (it == m_plain.end()) continue;
      std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(it->second.data()), it->second.size());
      store::append_plain(out, id, bytes, 1);
    }
    return out;
  }
  /// A directory entry named `name` holding `entries` (stored, split when large).
  Entry dir(const std::string& name, std::vector<Entry> entries) {
    tree::Tree t{std::move(entries)};
    auto objects = tree::encode_dir(std::move(t));
    for (auto& p : objects.pieces) m_plain[p.id] = std::string(p.data.begin(), p.data.end());
    m_plain[objects.top.id] = std::string(objects.top.data.begin(), objects.top.data.end());
    Entry e;
    e.name = name;
    e.kind = Kind::dir;
    e.mode = 0755;
    e.subtree = objects.top.id;
    return e;
  }
  Entry file(const std::string& name, const std::string& content, int64_t mtime = 1'000'000'000) {
    Entry e;
    e.name = name;
    e.kind = Kind::file;
    e.mode = 0644;
    e.mtime_ns = mtime;
    e.size = content.size();
    if (!content.empty()) e.chunks.push_back({put(content), content.size()});
    return e;
  }
  std::atomic<size_t> asked{0};

 private:
  std::map<util::Digest, std::string> m_plain;
};

/// The options of a restore of `paths` of the snapshot whose root entry is `root`, into `to`.
inline materialize::RestoreOptions restore_options(const Entry& root, const std::filesystem::path& to,
                                                   std::vector<std::string> paths = {"/"}) {
  materialize::RestoreOptions ro;
  ro.to = to;
  ro.paths = std::move(paths);
  ro.root = root;
  ro.tree = root.subtree;
  return ro;
}

}  // namespace mirage::testing
