#include "libmirage/server/reach.hpp"

#include <algorithm>

#include "libmirage/server/methods.hpp"
#include "libmirage/tree/tree.hpp"

namespace mirage::server {

using nlohmann::json;
using util::Digest;

namespace {

constexpr size_t k_kept_devices = 16;
constexpr size_t k_kept_ids = 8u << 20;  ///< ids held in all (~0.5 GiB at most)

/// The trees a device's reads start from, sorted.
std::vector<Digest> roots_of(catalog::Catalog& cat, const std::string& device) {
  std::vector<Digest> roots;
  std::vector<std::string> refs;
  auto add_refs = [&](const json& spec) {
    if (!spec.is_object()) return;
    for (const char* key : {"layers", "from_layers", "recapture"})
      if (auto it = spec.find(key); it != spec.end() && it->is_array())
        for (const auto& r : *it)
          if (r.is_string()) refs.push_back(r.get<std::string>());
    if (auto it = spec.find("base"); it != spec.end() && it->is_string()) refs.push_back(it->get<std::string>());
    if (auto it = spec.find("given"); it != spec.end()) {
      if (auto l = it->find("layers"); it->is_object() && l != it->end() && l->is_array())
        for (const auto& r : *l)
          if (r.is_string()) refs.push_back(r.get<std::string>());
    }
  };
  for (const auto& s : cat.snapshots(device)) {
    roots.push_back(s.tree);
    add_refs(s.given);
  }
  add_refs(cat.given(device));
  for (const auto& o : cat.orders(device, "")) add_refs(o.spec);
  std::sort(refs.begin(), refs.end());
  refs.erase(std::unique(refs.begin(), refs.end()), refs.end());
  for (const auto& ref : refs) {
    try {
      roots.push_back(resolve_layer(cat, ref).tree);
    } catch (const Error&) {  // a layer deleted since: nothing of it to read
    }
  }
  std::sort(roots.begin(), roots.end());
  roots.erase(std::unique(roots.begin(), roots.end()), roots.end());
  return roots;
}

}  // namespace

void DeviceReach::walk(store::Repository& repo, const Digest& root, Reach& r) {
  tree::walk_reachable(
      root, [&](const Digest& d) { return repo.read_plain(d); },
      [&](const Digest& dir) {
        if (!r.trees.insert(dir).second) return false;
        r.ids.insert(dir);
        return true;
      },
      [&](const Digest& object) { r.ids.insert(object); },
      [](const Digest&, const Error&) {});  // nothing below it is readable anyway
}

std::shared_ptr<const DeviceReach::Reach> DeviceReach::of(store::Repository& repo, const std::string& device) {
  auto roots = roots_of(repo.catalog(), device);
  std::shared_ptr<const Reach> kept;
  {
    std::lock_guard lock(m_mutex);
    if (auto it = m_kept.find(device); it != m_kept.end()) {
      it->second.used = ++m_clock;
      kept = it->second.reach;
    }
  }
  if (kept && kept->roots == roots) return kept;
  // New roots only (a snapshot committed, an order queued): walk what is new from the
  // set kept. A root gone (a snapshot forgotten) walks the whole set again.
  auto next = std::make_shared<Reach>();
  if (kept && std::includes(roots.begin(), roots.end(), kept->roots.begin(), kept->roots.end())) {
    next->trees = kept->trees;
    next->ids = kept->ids;
  }
  next->roots = roots;
  for (const auto& root : roots) walk(repo, root, *next);
  std::lock_guard lock(m_mutex);
  m_kept[device] = {next, ++m_clock};
  // Bounded: the least recently used go first, never the one just made.
  auto total = [&] {
    size_t n = 0;
    for (const auto& [d, k] : m_kept) n += k.reach->ids.size();
    return n;
  };
  while (m_kept.size() > 1 && (m_kept.size() > k_kept_devices || total() > k_kept_ids)) {
    auto oldest = std::min_element(m_kept.begin(), m_kept.end(),
                                   [](const auto& a, const auto& b) { return a.second.used < b.second.used; });
    if (oldest->first == device) break;
    m_kept.erase(oldest);
  }
  return next;
}

void DeviceReach::check(store::Repository& repo, const std::string& device, std::span<const Digest> ids) {
  if (ids.empty()) return;
  auto reach = of(repo, device);
  for (const auto& id : ids)
    if (!reach->ids.count(id))
      throw Error(ErrorKind::permission, "device " + device +
                                             " may read only what its snapshots and layers reach; object " + id.hex() +
                                             " is not among them");
}

std::vector<bool> DeviceReach::may_read(store::Repository& repo, const std::string& device, std::span<const Digest> ids) {
  std::vector<bool> out(ids.size());
  if (ids.empty()) return out;
  auto reach = of(repo, device);
  for (size_t i = 0; i < ids.size(); ++i) out[i] = reach->ids.count(ids[i]) > 0;
  return out;
}

}  // namespace mirage::server
