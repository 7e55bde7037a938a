// The in-memory volume, for tests: a process-wide registry of named volumes, so that
// every Volume opened from mem://name (two Repository objects in one test) shares the
// same packs. Each pack remembers how much of it was made durable, so a test can cut
// every pack back to that (crash_memory_volume) as a power cut would.
#include <algorithm>
#include <cerrno>
#include <map>
#include <mutex>

#include "libmirage/store/volume.hpp"
#include "libmirage/util/error.hpp"
#include "libmirage/util/hex.hpp"

namespace mirage::store {

namespace {

struct MemPack {
  std::mutex mutex;
  std::vector<uint8_t> bytes;
  uint64_t durable = 0;
  bool sealed = false;
};

struct MemVolume {
  std::mutex mutex;
  std::map<std::string, std::shared_ptr<MemPack>> packs;
  uint64_t capacity = 1ULL << 40;

  uint64_t used() {
    uint64_t n = 0;
    for (auto& [name, p] : packs) {
      std::lock_guard lock(p->mutex);
      n += p->bytes.size();
    }
    return n;
  }
};

std::mutex g_registry_mutex;
std::map<std::string, std::shared_ptr<MemVolume>>& registry() {
  static std::map<std::string, std::shared_ptr<MemVolume>> volumes;
  return volumes;
}

std::shared_ptr<MemVolume> volume_named(const std::string& name) {
  std::lock_guard lock(g_registry_mutex);
  auto& slot = registry()[name];
  if (!slot) slot = std::make_shared<MemVolume>();
  return slot;
}

class MemWriter final : public PackWriter {
 public:
  MemWriter(std::string name, std::shared_ptr<MemVolume> volume, std::shared_ptr<MemPack> pack)
      : m_name(std::move(name)), m_volume(std::move(volume)), m_pack(std::move(pack)) {}

  const std::string& name() const override { return m_name; }

  uint64_t append(std::span<const uint8_t> bytes) override {
    std::unique_lock vlock(m_volume->mutex);
    uint64_t used = m_volume->used();
    vlock.unlock();
    std::lock_guard lock(m_pack->mutex);
    if (m_pack->sealed) throw Error(ErrorKind::precondition, "pack " + m_name + ": sealed, no more appends");
    if (used + bytes.size() > m_volume->capacity) {
      errno = ENOSPC;
      throw_errno("pack " + m_name);
    }
    uint64_t at = m_pack->bytes.size();
    m_pack->bytes.insert(m_pack->bytes.end(), bytes.begin(), bytes.end());
    return at;
  }

  uint64_t durable() override {
    std::lock_guard lock(m_pack->mutex);
    m_pack->durable = m_pack->bytes.size();
    return m_pack->durable;
  }

  uint64_t size() const override {
    std::lock_guard lock(m_pack->mutex);
    return m_pack->bytes.size();
  }

  void seal() override {
    std::lock_guard lock(m_pack->mutex);
    m_pack->durable = m_pack->bytes.size();
    m_pack->sealed = true;
  }

  void abandon() noexcept override {
    std::lock_guard lock(m_pack->mutex);
    if (m_pack->sealed) return;
    m_pack->bytes.resize(m_pack->durable);
    m_pack->sealed = true;
  }

 private:
  std::string m_name;
  std::shared_ptr<MemVolume> m_volume;
  std::shared_ptr<MemPack> m_pack;
};

class MemReader final : public PackReader {
 public:
  MemReader(std::string name, std::shared_ptr<MemPack> pack) : m_name(std::move(name)), m_pack(std::move(pack)) {}

  const std::string& name() const override { return m_name; }

  size_t read_some(uint64_t offset, std::span<uint8_t> out) override {
    std::lock_guard lock(m_pack->mutex);
    if (offset >= m_pack->bytes.size()) return 0;
    size_t n = static_cast<size_t>(std::min<uint64_t>(out.size(), m_pack->bytes.size() - offset));
    std::copy_n(m_pack->bytes.begin() + static_cast<ptrdiff_t>(offset), n, out.begin());
    return n;
  }

  uint64_t size() override {
    std::lock_guard lock(m_pack->mutex);
    return m_pack->bytes.size();
  }

 private:
  std::string m_name;
  std::shared_ptr<MemPack> m_pack;
};

class MemoryVolume final : public Volume {
 public:
  MemoryVolume(std::string url, std::string name)
      : m_url(std::move(url)), m_name(std::move(name)), m_volume(volume_named(m_name)) {}

  const std::string& url() const override { return m_url; }

  void init() override {}

  std::unique_ptr<PackWriter> create_pack() override {
    auto pack = std::make_shared<MemPack>();
    std::lock_guard lock(m_volume->mutex);
    for (;;) {
      std::string name = util::random_hex(16);
      if (m_volume->packs.emplace(name, pack).second) return std::make_unique<MemWriter>(name, m_volume, pack);
    }
  }

  std::unique_ptr<PackReader> open_pack(const std::string& name) override {
    std::lock_guard lock(m_volume->mutex);
    auto it = m_volume->packs.find(name);
    if (it == m_volume->packs.end()) throw Error(ErrorKind::not_found, "open pack " + name + ": not in " + m_url);
    return std::make_unique<MemReader>(name, it->second);
  }

  bool remove(const std::string& name) override {
    std::lock_guard lock(m_volume->mutex);
    return m_volume->packs.erase(name) != 0;
  }

  std::vector<PackListing> list() override {
    std::lock_guard lock(m_volume->mutex);
    std::vector<PackListing> out;
    for (const auto& [name, pack] : m_volume->packs) out.push_back({name, location(name)});
    return out;
  }

  VolumeUsage usage() override {
    std::lock_guard lock(m_volume->mutex);
    uint64_t used = m_volume->used();
    return {used, m_volume->capacity > used ? m_volume->capacity - used : 0};
  }

  std::string location(const std::string& name) const override { return m_url + "/" + name + ".pack"; }

 private:
  std::string m_url, m_name;
  std::shared_ptr<MemVolume> m_volume;
};

}  // namespace

std::unique_ptr<Volume> open_memory_volume(const std::string& url, const std::string& name) {
  return std::make_unique<MemoryVolume>(url, name);
}

void drop_memory_volume(const std::string& name) {
  std::lock_guard lock(g_registry_mutex);
  registry().erase(name);
}

void set_memory_volume_capacity(const std::string& name, uint64_t bytes) {
  auto v = volume_named(name);
  std::lock_guard lock(v->mutex);
  v->capacity = bytes;
}

void crash_memory_volume(const std::string& name) {
  auto v = volume_named(name);
  std::lock_guard lock(v->mutex);
  for (auto& [n, p] : v->packs) {
    std::lock_guard plock(p->mutex);
    p->bytes.resize(p->durable);
  }
}

}  // namespace mirage::store
