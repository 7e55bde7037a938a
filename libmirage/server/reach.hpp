#pragma once
// What a device may read through chunks.get and chunks.delta: the objects its own
// snapshots reach, and those of every layer it has been given, ordered, or recorded in
// a snapshot (a 3-way apply reads the version it has; a revert, the one it had). A
// device's credential otherwise read any object whose id it could name: another
// device's trees, and through them its files.
//
// The set is walked once per device (each tree once: unchanged subtrees are shared)
// and kept until the device's roots change; a new snapshot or order walks only what
// is new. A handful of devices are kept (restores are rare next to syncs, which read
// nothing), bounded by the ids they hold in all.
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

#include "libmirage/store/repository.hpp"
#include "libmirage/util/digest.hpp"

namespace mirage::server {

class DeviceReach {
 public:
  /// Throws Error(permission) naming the first of `ids` that `device` may not read.
  void check(store::Repository& repo, const std::string& device, std::span<const util::Digest> ids);
  /// For each of `ids`, whether `device` may read it (its reach looked up once).
  std::vector<bool> may_read(store::Repository& repo, const std::string& device, std::span<const util::Digest> ids);

 private:
  struct Reach {
    std::vector<util::Digest> roots;  ///< sorted: the trees of its snapshots and layers
    std::unordered_set<util::Digest, util::DigestHash> trees, ids;
  };
  std::shared_ptr<const Reach> of(store::Repository& repo, const std::string& device);
  /// Adds what `root` reaches to `r` (trees already in r.trees are not walked again). A
  /// tree that cannot be read is left out with what is below it: nothing there is
  /// readable anyway, and the rest of the device stays so.
  static void walk(store::Repository& repo, const util::Digest& root, Reach& r);

  std::mutex m_mutex;
  struct Kept {
    std::shared_ptr<const Reach> reach;
    uint64_t used = 0;
  };
  std::map<std::string, Kept> m_kept;
  uint64_t m_clock = 0;
};

}  // namespace mirage::server
