#include "libmirage/server/metrics.hpp"

#include <unistd.h>

#include <fstream>
#include <sstream>

#include "libmirage/util/clock.hpp"

namespace mirage::server {

std::array<int64_t, 6> sync_age_buckets(const std::vector<int64_t>& last_syncs, int64_t now) {
  constexpr int64_t k_hour = 3600LL * 1000000000;
  constexpr std::array<int64_t, 4> k_bounds = {k_hour, 24 * k_hour, 7 * 24 * k_hour, 30 * 24 * k_hour};
  std::array<int64_t, 6> out{};
  for (int64_t t : last_syncs) {
    if (t == 0) {
      out[5]++;
      continue;
    }
    size_t i = 0;
    while (i < k_bounds.size() && now - t > k_bounds[i]) ++i;
    out[i]++;
  }
  return out;
}

void Metrics::request(const std::string& method, const std::string& outcome, double seconds) {
  std::lock_guard lock(m_mutex);
  m_requests[{method, outcome}]++;
  auto& l = m_latency[method];
  for (size_t i = 0; i < k_buckets.size(); ++i)
    if (seconds <= k_buckets[i]) l.buckets[i]++;
  l.count++;
  l.sum += seconds;
}

void Metrics::uploaded(uint64_t chunks, uint64_t new_chunks, uint64_t stored_bytes) {
  std::lock_guard lock(m_mutex);
  m_chunks += chunks;
  m_new_chunks += new_chunks;
  m_stored_bytes += stored_bytes;
}

void Metrics::gc_run(uint64_t deleted_bytes, uint64_t freed_bytes) {
  std::lock_guard lock(m_mutex);
  m_gc_runs++;
  m_gc_deleted += deleted_bytes;
  m_gc_freed += freed_bytes;
}

void Metrics::busy() {
  std::lock_guard lock(m_mutex);
  m_busy++;
}

namespace {

void header(std::ostream& out, const char* name, const char* type, const char* help) {
  out << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
}

}  // namespace

std::string Metrics::render(catalog::Catalog& cat) {
  std::ostringstream out;
  {
    std::lock_guard lock(m_mutex);
    header(out, "mirage_requests_total", "counter", "Requests handled, by method and outcome.");
    for (const auto& [key, n] : m_requests)
      out << "mirage_requests_total{method=\"" << key.first << "\",outcome=\"" << key.second << "\"} " << n << "\n";
    header(out, "mirage_request_duration_seconds", "histogram", "Time to handle a request, by method.");
    for (const auto& [method, l] : m_latency) {
      for (size_t i = 0; i < k_buckets.size(); ++i)
        out << "mirage_request_duration_seconds_bucket{method=\"" << method << "\",le=\"" << k_buckets[i] << "\"} "
            << l.buckets[i] << "\n";
      out << "mirage_request_duration_seconds_bucket{method=\"" << method << "\",le=\"+Inf\"} " << l.count << "\n"
          << "mirage_request_duration_seconds_sum{method=\"" << method << "\"} " << l.sum << "\n"
          << "mirage_request_duration_seconds_count{method=\"" << method << "\"} " << l.count << "\n";
    }
    header(out, "mirage_upload_chunks_total", "counter", "Chunks received in uploads.");
    out << "mirage_upload_chunks_total " << m_chunks << "\n";
    header(out, "mirage_upload_new_chunks_total", "counter", "Chunks received that were not stored yet.");
    out << "mirage_upload_new_chunks_total " << m_new_chunks << "\n";
    header(out, "mirage_upload_stored_bytes_total", "counter", "Bytes appended to packs by uploads.");
    out << "mirage_upload_stored_bytes_total " << m_stored_bytes << "\n";
    header(out, "mirage_body_budget_refusals_total", "counter",
           "Requests answered 503 (Retry-After) because --max-body-memory had no room for their body within body-wait.");
    out << "mirage_body_budget_refusals_total " << m_busy << "\n";
    header(out, "mirage_gc_runs_total", "counter", "GC runs by this process.");
    out << "mirage_gc_runs_total " << m_gc_runs << "\n";
    header(out, "mirage_gc_deleted_bytes_total", "counter", "Bytes of unreferenced chunks dropped by GC.");
    out << "mirage_gc_deleted_bytes_total " << m_gc_deleted << "\n";
    header(out, "mirage_gc_freed_bytes_total", "counter", "Pack bytes freed by GC repacks.");
    out << "mirage_gc_freed_bytes_total " << m_gc_freed << "\n";
  }
  auto counts = cat.counts(util::now_ns() - 3600LL * 1000000000);
  header(out, "mirage_devices", "gauge", "Devices by state.");
  for (auto state : {catalog::DeviceState::pending, catalog::DeviceState::accepted, catalog::DeviceState::rejected,
                     catalog::DeviceState::replaced})
    out << "mirage_devices{state=\"" << catalog::state_name(state) << "\"} " << counts.devices[size_t(state)] << "\n";
  header(out, "mirage_devices_last_sync", "gauge",
         "Accepted devices by the age of their last sync (1h: within the hour, 1d, 7d, 30d, older, never).");
  auto ages = sync_age_buckets(cat.last_syncs(catalog::DeviceState::accepted), util::now_ns());
  for (size_t i = 0; i < ages.size(); ++i)
    out << "mirage_devices_last_sync{age=\"" << k_sync_age_labels[i] << "\"} " << ages[i] << "\n";
  header(out, "mirage_snapshots", "gauge", "Snapshots in the catalog.");
  out << "mirage_snapshots " << counts.snapshots << "\n";
  header(out, "mirage_chunks", "gauge", "Chunks in the index.");
  out << "mirage_chunks " << counts.chunks << "\n";
  header(out, "mirage_pack_bytes", "gauge", "Bytes of pack files the index covers.");
  out << "mirage_pack_bytes " << counts.pack_bytes << "\n";
  header(out, "mirage_uploads_in_flight", "gauge", "Uploads begun and not committed (the last hour).");
  out << "mirage_uploads_in_flight " << counts.uploads_in_flight << "\n";
  header(out, "mirage_orders_pending", "gauge", "Orders waiting for their device.");
  out << "mirage_orders_pending " << counts.orders_pending << "\n";
  long pages = 0, resident = 0;
  std::ifstream("/proc/self/statm") >> pages >> resident;
  header(out, "process_resident_memory_bytes", "gauge", "Resident memory of this server process.");
  out << "process_resident_memory_bytes " << resident * ::sysconf(_SC_PAGESIZE) << "\n";
  return out.str();
}

}  // namespace mirage::server
