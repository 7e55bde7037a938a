#include "libmirage/store/stats.hpp"

#include <unordered_map>
#include <unordered_set>

#include "libmirage/store/repository.hpp"
#include "libmirage/tree/tree.hpp"

namespace mirage::store {

using util::Digest;

void to_json(nlohmann::json& j, const UsageStats& s) {
  auto ratio = [](uint64_t a, uint64_t b) { return b ? static_cast<double>(a) / static_cast<double>(b) : 0.0; };
  j = {{"snapshots", s.snapshots},
       {"logical_bytes", s.logical_bytes},
       {"unique_chunks", s.unique_chunks},
       {"unique_bytes", s.unique_bytes},
       {"stored_bytes", s.stored_bytes},
       {"trees", s.trees},
       {"dedup_ratio", ratio(s.logical_bytes, s.unique_bytes)},
       {"compression_ratio", ratio(s.unique_bytes, s.stored_bytes)}};
}

namespace {

class Walker {
 public:
  Walker(Repository& repo, ChunkSizes& all, UsageStats& stats)
      : m_repo(repo), m_all(all), m_stats(stats) {}

  /// File bytes under directory `id`, memoized: a subtree shared by snapshots is walked once.
  uint64_t bytes_under(const Digest& id) {
    if (auto it = m_bytes.find(id); it != m_bytes.end()) return it->second;
    m_stats.trees++;
    uint64_t total = 0;
    std::vector<Digest> subdirs;
    tree::Fetch fetch = [&](const Digest& d) { return m_repo.read_plain(d); };
    tree::for_each_piece(id, fetch, "tree " + id.hex(), [&](const Digest&, const tree::Tree& piece) {
      for (const auto& e : piece.entries) {
        if (e.kind == tree::Kind::dir) subdirs.push_back(e.subtree);
        if (e.kind != tree::Kind::file) continue;
        total += e.size;
        for (const auto& c : e.chunks) count_chunk(c);
      }
    });
    for (const auto& d : subdirs) total += bytes_under(d);
    m_bytes[id] = total;
    return total;
  }

 private:
  void count_chunk(const tree::ChunkRef& c) {
    if (!m_mine.insert(c.id).second) return;
    m_stats.unique_chunks++;
    m_stats.unique_bytes += c.size;
    uint64_t stored = 0;
    if (auto at = m_repo.catalog().find_chunk(c.id)) stored = at->stored;
    m_stats.stored_bytes += stored;
    m_all.emplace(c.id, std::make_pair(c.size, stored));
  }

  Repository& m_repo;
  ChunkSizes& m_all;
  std::unordered_set<Digest, util::DigestHash> m_mine;
  UsageStats& m_stats;
  std::unordered_map<Digest, uint64_t, util::DigestHash> m_bytes;
};

}  // namespace

UsageStats usage(Repository& repo, std::span<const catalog::Snapshot> snapshots,
                 ChunkSizes& all) {
  UsageStats stats;
  Walker w(repo, all, stats);
  for (const auto& s : snapshots) {
    stats.snapshots++;
    stats.logical_bytes += w.bytes_under(s.tree);
  }
  return stats;
}

UsageStats total(std::span<const UsageStats> parts, const ChunkSizes& all) {
  UsageStats t;
  for (const auto& p : parts) {
    t.snapshots += p.snapshots;
    t.logical_bytes += p.logical_bytes;
    t.trees += p.trees;
  }
  t.unique_chunks = all.size();
  for (const auto& [id, sizes] : all) {
    t.unique_bytes += sizes.first;
    t.stored_bytes += sizes.second;
  }
  return t;
}

}  // namespace mirage::store
