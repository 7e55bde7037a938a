#include "libmirage/policy/retention.hpp"

#include <algorithm>
#include <ctime>
#include <numeric>

#include "libmirage/util/error.hpp"

namespace mirage::policy {

namespace {

struct Tier {
  const char* name;
  uint32_t Retention::*count;
  const char* period;  ///< strftime format of the period a snapshot falls in; nullptr: every snapshot its own
};

constexpr Tier k_tiers[] = {{"last", &Retention::last, nullptr},
                            {"hourly", &Retention::hourly, "%Y-%m-%dT%H"},
                            {"daily", &Retention::daily, "%Y-%m-%d"},
                            {"weekly", &Retention::weekly, "%G-W%V"},
                            {"monthly", &Retention::monthly, "%Y-%m"}};

std::string period_of(int64_t ns, const char* format) {
  time_t secs = static_cast<time_t>(ns / 1000000000);
  tm t;
  gmtime_r(&secs, &t);
  char buf[32];
  strftime(buf, sizeof buf, format, &t);
  return buf;
}

}  // namespace

Retention Retention::from_json(const nlohmann::json& doc) {
  Retention r;
  if (doc.is_null()) return r;
  if (!doc.is_object()) throw Error(ErrorKind::usage, "retention: not a JSON object");
  for (const auto& [key, value] : doc.items()) {
    const Tier* tier = nullptr;
    for (const auto& t : k_tiers)
      if (key == t.name) tier = &t;
    if (!tier) throw Error(ErrorKind::usage, "retention: unknown field '" + key + "' (last, hourly, daily, weekly, monthly)");
    if (!value.is_number_integer() || value.get<int64_t>() < 0 || value.get<int64_t>() > 100000)
      throw Error(ErrorKind::usage, "retention: '" + key + "' must be a count from 0 to 100000");
    r.*(tier->count) = value.get<uint32_t>();
  }
  return r;
}

nlohmann::json Retention::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& t : k_tiers) j[t.name] = this->*(t.count);
  return j;
}

std::vector<std::vector<std::string>> retention_tiers(const std::vector<SnapshotTime>& snapshots, const Retention& r) {
  std::vector<std::vector<std::string>> kept(snapshots.size());
  std::vector<size_t> newest_first(snapshots.size());
  std::iota(newest_first.begin(), newest_first.end(), size_t{0});
  std::stable_sort(newest_first.begin(), newest_first.end(),
                   [&](size_t a, size_t b) { return snapshots[a].created_at > snapshots[b].created_at; });
  for (const auto& tier : k_tiers) {
    uint32_t left = r.*(tier.count);
    std::string last_period;
    for (size_t k = 0; k < newest_first.size() && left > 0; ++k) {
      size_t i = newest_first[k];
      if (tier.period) {
        std::string p = period_of(snapshots[i].created_at, tier.period);
        if (p == last_period) continue;
        last_period = std::move(p);
      }
      kept[i].push_back(tier.name);
      --left;
    }
  }
  for (size_t i = 0; i < snapshots.size(); ++i)
    if (snapshots[i].pinned) kept[i].push_back("pinned");
  if (!newest_first.empty() && kept[newest_first.front()].empty()) kept[newest_first.front()].push_back("newest");
  return kept;
}

}  // namespace mirage::policy
