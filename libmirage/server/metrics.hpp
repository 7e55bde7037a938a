#pragma once
// Prometheus metrics of a server process (text exposition format 0.0.4 at /metrics):
// requests by method and outcome, their latency as histograms, bytes uploaded, GC runs,
// requests refused for the body budget, and gauges read from the catalog when scraped
// (devices by state and accepted devices by the age of their last sync, snapshots,
// chunks, pack bytes, uploads in flight) plus the process's resident memory. No label
// names a device: a fleet of any size gives the same few series.
#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "libmirage/catalog/catalog.hpp"

namespace mirage::server {

/// The last-sync age buckets of /metrics, disjoint: synced within the last hour, day,
/// week, 30 days, longer ago, never.
inline constexpr std::array<const char*, 6> k_sync_age_labels = {"1h", "1d", "7d", "30d", "older", "never"};
/// How many of `last_syncs` (ns, 0: never) fall in each k_sync_age_labels bucket at `now`.
std::array<int64_t, 6> sync_age_buckets(const std::vector<int64_t>& last_syncs, int64_t now);

class Metrics {
 public:
  /// One request: its method, its outcome ("ok" or the error kind) and how long it took.
  void request(const std::string& method, const std::string& outcome, double seconds);
  void uploaded(uint64_t chunks, uint64_t new_chunks, uint64_t stored_bytes);
  void gc_run(uint64_t deleted_bytes, uint64_t freed_bytes);
  /// One request refused with 503 because its body found no room in --max-body-memory
  /// within body-wait (it never reached a handler, so request() did not count it).
  void busy();
  /// The exposition text; catalog gauges are queried now.
  std::string render(catalog::Catalog& cat);

  static constexpr std::array<double, 12> k_buckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                       0.1,   0.25,   0.5,   1,    2.5,   10};

 private:
  struct Latency {
    std::array<uint64_t, k_buckets.size()> buckets{};
    uint64_t count = 0;
    double sum = 0;
  };
  std::mutex m_mutex;
  std::map<std::pair<std::string, std::string>, uint64_t> m_requests;
  std::map<std::string, Latency> m_latency;
  uint64_t m_chunks = 0, m_new_chunks = 0, m_stored_bytes = 0;
  uint64_t m_gc_runs = 0, m_gc_deleted = 0, m_gc_freed = 0;
  uint64_t m_busy = 0;
};

}  // namespace mirage::server
