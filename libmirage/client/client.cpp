#include "libmirage/client/client.hpp"

#include "libmirage/client/layers.hpp"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <future>
#include <mutex>
#include <sstream>

#include "libmirage/store/record.hpp"
#include "libmirage/util/clock.hpp"
#include "libmirage/util/error.hpp"
#include "libmirage/util/fd.hpp"
#include "libmirage/util/hex.hpp"
#include "libmirage/util/log.hpp"

namespace mirage::client {

namespace fs = std::filesystem;
using nlohmann::json;
using util::Digest;

nlohmann::json Client::call(const std::string& method, nlohmann::json params) {
  return call_binary(method, std::move(params), {}).result;
}

proto::Reply Client::call_binary(const std::string& method, nlohmann::json params, std::vector<uint8_t> binary) {
  proto::Request req;
  req.id = m_next_id++;
  req.method = method;
  req.params = std::move(params);
  req.binary = std::move(binary);
  proto::Reply reply = m_transport->call(req);
  if (reply.error) throw *reply.error;
  return reply;
}

namespace {

std::string trim(std::string s) {
  while (!s.empty() && isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t i = 0;
  while (i < s.size() && isspace(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

std::optional<std::string> read_trimmed(const fs::path& p) {
  try {
    std::string s = trim(util::read_file(p));
    if (!s.empty()) return s;
  } catch (const Error&) {
  }
  return std::nullopt;
}

bool is_real_root(const fs::path& root) {
  std::error_code ec;
  return fs::equivalent(root, "/", ec);
}

/// Opens ROOT/REL for reading without ever leaving ROOT. With openat2 (Linux 5.6),
/// symlinks resolve as if ROOT were "/" (RESOLVE_IN_ROOT: "/etc/shadow" and "../.." stay
/// inside, so etc/os-release -> ../usr/lib/os-release works as on the booted system).
/// Without it (ENOSYS, or EPERM from a seccomp filter) each component is opened with
/// O_NOFOLLOW, so any symlink is refused. O_NONBLOCK: a FIFO does not block the open.
/// Returns an empty Fd with errno set on failure.
util::Fd open_in_root(const fs::path& root, const std::string& rel) {
  util::Fd dir(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return {};
  constexpr uint64_t k_flags = O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
  open_how how{};
  how.flags = k_flags;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  long fd = ::syscall(SYS_openat2, dir.get(), rel.c_str(), &how, sizeof how);
  if (fd >= 0) return util::Fd(static_cast<int>(fd));
  if (errno != ENOSYS && errno != EPERM) return {};
  size_t at = 0;
  for (;;) {
    size_t slash = rel.find('/', at);
    std::string part = rel.substr(at, slash == std::string::npos ? std::string::npos : slash - at);
    if (part.empty() || part == "." || part == "..") {
      errno = EINVAL;
      return {};
    }
    bool last = slash == std::string::npos;
    int flags = last ? static_cast<int>(k_flags) | O_NOFOLLOW : O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    util::Fd next(::openat(dir.get(), part.c_str(), flags));
    if (!next || last) return next;
    dir = std::move(next);
    at = slash + 1;
  }
}

/// The content of the identity file ROOT/REL (hostname, machine-id, os-release), at most
/// `cap` bytes, read without leaving ROOT (open_in_root). Absent: nullopt. A file that
/// cannot be opened safely, is not a regular file (a FIFO, /dev/zero) or is larger than
/// `cap`: nullopt and a warning, so nothing outside ROOT is read and nothing blocks.
std::optional<std::string> read_identity_file(const fs::path& root, const std::string& rel, size_t cap) {
  std::string display = (root / rel).string();
  util::Fd fd = open_in_root(root, rel);
  if (!fd) {
    if (errno != ENOENT) util::warn(display + ": not read: " + std::string(strerror(errno)));
    return std::nullopt;
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    util::warn(display + ": not read: not a regular file");
    return std::nullopt;
  }
  std::string data(cap + 1, '\0');
  size_t n = 0;
  try {
    n = util::read_full(fd.get(), std::span(reinterpret_cast<uint8_t*>(data.data()), data.size()), display);
  } catch (const Error& e) {
    util::warn(std::string(e.what()) + " (not used)");
    return std::nullopt;
  }
  if (n > cap) {
    util::warn(display + ": not read: larger than " + std::to_string(cap) + " bytes");
    return std::nullopt;
  }
  data.resize(n);
  return data;
}

constexpr size_t k_identity_cap = 4096;

std::optional<std::string> read_identity(const fs::path& root, const std::string& rel) {
  auto s = read_identity_file(root, rel, k_identity_cap);
  if (!s) return std::nullopt;
  std::string t = trim(*s);
  if (t.empty()) return std::nullopt;
  return t;
}

bool all_of(const std::string& s, const char* chars) { return s.find_first_not_of(chars) == std::string::npos; }

constexpr size_t k_ids_per_request = 16384;

/// Extra connections to the same server, lent out one call at a time: an idle one, a
/// new one while fewer than `max` exist, else the main one (whose transport
/// serializes calls). A connection that cannot be opened turns the pool off.
class ConnectionPool {
 public:
  ConnectionPool(Client& main, ConnectionFactory more, size_t max)
      : m_main(main), m_more(std::move(more)), m_max(max) {}

  class Lease {
   public:
    explicit Lease(ConnectionPool& pool) : m_pool(pool), m_extra(pool.take()) {}
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { m_pool.give(m_extra); }
    Client& client() { return m_extra ? *m_extra : m_pool.m_main; }

   private:
    ConnectionPool& m_pool;
    Client* m_extra;
  };

 private:
  Client* take() {
    std::lock_guard lock(m_mutex);
    if (!m_idle.empty()) {
      Client* c = m_idle.back();
      m_idle.pop_back();
      return c;
    }
    if (!m_more || m_all.size() >= m_max) return nullptr;
    try {
      m_all.push_back(m_more());
      return m_all.back().get();
    } catch (const Error& e) {
      util::warn(std::string("extra connection failed, sharing one: ") + e.what());
      m_more = nullptr;
      return nullptr;
    }
  }
  void give(Client* c) {
    if (!c) return;
    std::lock_guard lock(m_mutex);
    m_idle.push_back(c);
  }

  Client& m_main;
  ConnectionFactory m_more;
  size_t m_max;
  std::mutex m_mutex;
  std::vector<std::unique_ptr<Client>> m_all;
  std::vector<Client*> m_idle;
};

class ProtocolSink : public scan::ChunkSink {
 public:
  ProtocolSink(Client& client, std::string device, ConnectionFactory more, size_t max_connections)
      : m_device(std::move(device)), m_pool(client, std::move(more), max_connections) {}

  std::vector<bool> missing(std::span<const Digest> ids) override {
    ConnectionPool::Lease lease(m_pool);
    return missing_on(lease.client(), ids);
  }

  void put(std::vector<uint8_t> records) override {
    ConnectionPool::Lease lease(m_pool);
    json params = json::object();
    if (!m_device.empty()) params["device_id"] = m_device;  // else an admin uploading a capture
    lease.client().call_binary("chunks.put", params, std::move(records));
  }

 private:
  std::vector<bool> missing_on(Client& client, std::span<const Digest> ids) {
    std::vector<bool> out;
    out.reserve(ids.size());
    for (size_t at = 0; at < ids.size(); at += k_ids_per_request) {
      auto part = ids.subspan(at, std::min(k_ids_per_request, ids.size() - at));
      auto reply = client.call_binary("chunks.missing", json::object(), proto::encode_ids(part));
      if (reply.binary.size() != part.size()) throw Error(ErrorKind::failed, "chunks.missing: reply of the wrong size");
      for (uint8_t b : reply.binary) out.push_back(b != 0);
    }
    return out;
  }

  std::string m_device;
  ConnectionPool m_pool;
};

class ProtocolSource : public materialize::ObjectSource {
 public:
  ProtocolSource(Client& client, ConnectionFactory more) : m_client(client), m_pool(client, std::move(more), 2) {}

  /// Large batches are split over two extra connections (two server processes reading
  /// packs at once, while tree lookups keep the main one); small ones use the main one.
  std::vector<uint8_t> records(std::span<const Digest> ids) override {
    if (ids.size() < 256) return fetch(m_client, ids);
    ConnectionPool::Lease a(m_pool), b(m_pool);
    size_t half = ids.size() / 2;
    auto first = std::async(std::launch::async, [&] { return fetch(a.client(), ids.first(half)); });
    auto out = fetch(b.client(), ids.subspan(half));
    auto front = first.get();
    front.insert(front.end(), out.begin(), out.end());
    return front;
  }

  uint64_t bytes_received() const override { return m_received; }

  std::vector<uint8_t> deltas(std::span<const Digest> pairs) override {
    std::vector<uint8_t> out;
    constexpr size_t k_pairs = 4096;
    for (size_t at = 0; at < pairs.size(); at += 2 * k_pairs) {
      auto part = pairs.subspan(at, std::min(2 * k_pairs, pairs.size() - at));
      auto reply = m_client.call_binary("chunks.delta", json::object(), proto::encode_ids(part));
      m_received += reply.binary.size() + part.size() * 32;
      out.insert(out.end(), reply.binary.begin(), reply.binary.end());
    }
    return out;
  }

 private:
  std::vector<uint8_t> fetch(Client& client, std::span<const Digest> ids) {
    std::vector<uint8_t> out;
    for (size_t at = 0; at < ids.size(); at += k_ids_per_request) {
      auto part = ids.subspan(at, std::min(k_ids_per_request, ids.size() - at));
      auto reply = client.call_binary("chunks.get", json::object(), proto::encode_ids(part));
      m_received += reply.binary.size() + part.size() * 32;  // ids out, records back
      if (out.empty())
        out = std::move(reply.binary);
      else
        out.insert(out.end(), reply.binary.begin(), reply.binary.end());
    }
    return out;
  }

  Client& m_client;
  ConnectionPool m_pool;
  std::atomic<uint64_t> m_received{0};
};

}  // namespace

std::unique_ptr<scan::ChunkSink> chunk_sink(Client& client, const std::string& device, ConnectionFactory more,
                                            size_t max_connections) {
  return std::make_unique<ProtocolSink>(client, device, std::move(more), max_connections);
}

std::unique_ptr<materialize::ObjectSource> object_source(Client& client, ConnectionFactory more) {
  return std::make_unique<ProtocolSource>(client, std::move(more));
}

void check_device_id(const std::string& id) {
  bool ok = !id.empty() && id.size() <= 128 && id != "." && id != ".." &&
            all_of(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:");
  if (!ok) throw Error(ErrorKind::usage, "device id '" + id + "': use letters, digits and - _ . : (at most 128; not . or ..)");
}

std::optional<std::string> detect_device_id(const fs::path& root) {
  auto lower = [](std::string id) {
    for (auto& c : id) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
    return id;
  };
  if (is_real_root(root)) {
    // The kernel's file; a UUID (hex and dashes), else the machine-id below.
    if (auto uuid = read_trimmed("/sys/class/dmi/id/product_uuid")) {
      std::string id = lower(*uuid);
      if (id.size() == 36 && all_of(id, "0123456789abcdef-")) return id;
      util::warn("/sys/class/dmi/id/product_uuid is not a UUID; using etc/machine-id");
    }
  }
  auto mid = read_identity(root, "etc/machine-id");
  if (!mid) return std::nullopt;
  // machine-id(5): 32 hex digits. Anything else must not name the state directory.
  std::string id = lower(*mid);
  if (id.size() != 32 || !all_of(id, "0123456789abcdef"))
    throw Error(ErrorKind::usage, (root / "etc/machine-id").string() + ": not a machine id (32 hex digits); pass --device-id");
  return id;
}

json inventory(const fs::path& root, std::string* hostname) {
  json inv = json::object();
  struct utsname u;
  if (::uname(&u) == 0) inv["arch"] = u.machine;
  std::string host;
  if (auto h = read_identity(root, "etc/hostname")) host = *h;
  if (host.empty() && is_real_root(root)) {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) == 0) host = buf;
  }
  if (hostname) *hostname = host;
  std::istringstream os(read_identity_file(root, "etc/os-release", 64 * 1024).value_or(""));
  std::string line;
  while (std::getline(os, line)) {
    auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string key = line.substr(0, eq), value = line.substr(eq + 1);
    if (value.size() >= 2 && (value[0] == '"' || value[0] == '\'')) value = value.substr(1, value.size() - 2);
    if (key == "ID") inv["os_id"] = value;
    if (key == "VERSION_ID") inv["os_version"] = value;
    if (key == "PRETTY_NAME") inv["os_name"] = value;
  }
  if (is_real_root(root)) {
    for (const char* field : {"sys_vendor", "product_name", "product_version"})
      if (auto v = read_trimmed(fs::path("/sys/class/dmi/id") / field)) inv[field] = *v;
    // PCI ids as "vendor:device" (hex, without 0x), for driver profiles.
    json pci = json::array();
    std::error_code ec;
    for (const auto& dev : fs::directory_iterator("/sys/bus/pci/devices", ec)) {
      auto v = read_trimmed(dev.path() / "vendor"), d = read_trimmed(dev.path() / "device");
      if (v && d && v->size() > 2 && d->size() > 2) pci.push_back(v->substr(2) + ":" + d->substr(2));
    }
    if (!pci.empty()) inv["pci"] = pci;
  }
  return inv;
}

void to_json(json& j, const CentralizeResult& r) {
  j = {{"device_id", r.device_id}, {"state", r.state}, {"seconds", r.seconds}};
  if (!r.snapshot.is_null()) {
    j["snapshot"] = r.snapshot;
    j["stats"] = r.stats;
  }
  if (!r.order.is_null()) j["order"] = r.order;
  if (!r.protected_by.is_null()) j["protected_by"] = r.protected_by;
  if (!r.incomplete.empty()) j["incomplete"] = r.incomplete;
}

std::string device_secret(const fs::path& state_dir) {
  fs::path file = state_dir / "credential";
  std::error_code ec;
  if (fs::exists(file, ec)) {
    std::string s = trim(util::read_file(file));
    if (s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string::npos) return s;
    throw Error(ErrorKind::integrity, "device credential " + file.string() + " is damaged");
  }
  util::make_dirs(state_dir);
  std::string secret = util::random_hex(32);
  util::AtomicFile f(file, 0600);
  f.write(secret + "\n");
  f.commit();
  return secret;
}

void make_state_private(const fs::path& state_dir) {
  util::make_dirs(state_dir);
  struct stat dir;
  if (::stat(state_dir.c_str(), &dir) != 0) throw_errno(ErrorKind::failed, "stat " + state_dir.string());
  // Never chmod a shared directory (--state /tmp): refuse it, others could read or plant files there.
  if ((dir.st_mode & (S_ISVTX | S_IWOTH)) != 0)
    throw Error(ErrorKind::usage, "state directory " + state_dir.string() + " is shared (world-writable or sticky); give a private one");
  if (::chmod(state_dir.c_str(), 0700) != 0)
    throw_errno(errno == EROFS || errno == EPERM ? ErrorKind::permission : ErrorKind::failed, "chmod " + state_dir.string());
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(state_dir, ec)) {
    struct stat st;
    if (::lstat(e.path().c_str(), &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077) == 0 || st.st_uid != ::geteuid())
      continue;
    if (::chmod(e.path().c_str(), st.st_mode & 0700) != 0)
      throw_errno(errno == EROFS || errno == EPERM ? ErrorKind::permission : ErrorKind::failed, "chmod " + e.path().string());
  }
}

CentralizeResult centralize(Client& client, const CentralizeOptions& opts) {
  auto start = std::chrono::steady_clock::now();
  make_state_private(opts.state_dir);
  struct PrivateAfter {  // files made during the sync (trees.db, files.cache, ...) too
    const fs::path& dir;
    ~PrivateAfter() {
      try {
        make_state_private(dir);
      } catch (const Error& e) {
        util::warn(e.what());
      }
    }
  } private_after{opts.state_dir};
  CentralizeResult result;
  result.device_id = opts.device_id;
  std::string hostname;
  json inv = inventory(opts.root, &hostname);
  json dev;
  try {
    dev = client.call("device.register", {{"device_id", opts.device_id},
                                          {"hostname", hostname},
                                          {"inventory", inv},
                                          {"credential_hash", util::sha256_hex(device_secret(opts.state_dir))}});
  } catch (const Error& e) {
    // The server refuses a pending device's credential as a precondition before any
    // method runs: the same answer as a registration that left it pending.
    if (e.kind() != ErrorKind::precondition) throw;
    dev = {{"state", "pending"}};
  }
  result.state = dev.value("state", "pending");
  if (result.state == "rejected") throw Error(ErrorKind::permission, "device " + opts.device_id + ": rejected by an admin");
  if (result.state != "accepted") return result;

  auto policy = policy::UploadPolicy::from_json(client.call("policy.get", {{"device_id", opts.device_id}})["policy"]);
  if (is_real_root(opts.root)) {
    // Swap files in use are never uploaded.
    std::ifstream swaps("/proc/swaps");
    std::string line;
    std::getline(swaps, line);
    while (std::getline(swaps, line)) {
      auto sp = line.find_first_of(" \t");
      if (sp != std::string::npos && line.rfind("/dev/", 0) != 0) policy.add_unprotected(line.substr(0, sp));
    }
  }
  // An apply a crash interrupted is finished or rolled back before anything else.
  std::string recovered = layer::recover(opts.root, opts.state_dir / "apply.journal");
  if (recovered != "none") util::warn("an interrupted layer apply was " + std::string(recovered == "resumed" ? "finished" : "rolled back"));
  json next = client.call("order.next", {{"device_id", opts.device_id}});
  bool has_order = next.contains("order");

  fs::path cache_file = opts.state_dir / "files.cache";
  auto snapshot = [&](bool pinned) {
    bool damaged = false;
    scan::FilesCache cache = scan::FilesCache::load(cache_file, &damaged);
    if (damaged) util::warn("files cache " + cache_file.string() + " is damaged or from another version; reading every file");
    ProtocolSink sink(client, opts.device_id, opts.more_connections, opts.threads);
    for (int attempt = 0;; ++attempt) {
      scan::ScanOptions so;
      so.root = opts.root;
      so.policy = policy;
      so.cache = attempt == 0 ? &cache : nullptr;
      so.compression_level = opts.compression_level;
      so.threads = opts.threads;
      so.progress = opts.progress;
      std::vector<std::pair<Digest, std::vector<uint8_t>>> trees;
      so.on_tree = [&](const Digest& id, std::span<const uint8_t> data) { trees.emplace_back(id, std::vector<uint8_t>(data.begin(), data.end())); };
      scan::ScanResult scanned = scan::scan(so, sink);
      json stats = scanned.stats;
      stats.erase("warnings");
      // Tests stop here to leave an upload in flight (chunks sent, no snapshot committed).
      if (opts.crash_point) opts.crash_point("before_commit", 0);
      try {
        result.snapshot = client.call("snapshot.commit", {{"device_id", opts.device_id},
                                                          {"tree", scanned.tree.hex()},
                                                          {"root", util::to_hex(tree::encode_entry(scanned.root))},
                                                          {"stats", stats},
                                                          {"pinned", pinned}});
      } catch (const Error& e) {
        // The server lacks something the cache vouched for (e.g. removed by GC): rescan everything.
        if (e.kind() == ErrorKind::precondition && attempt == 0 && e.reason() == proto::k_reason_incomplete) {
          util::warn(std::string(e.what()) + "; rescanning without the files cache");
          continue;
        }
        throw;
      }
      result.stats = std::move(scanned.stats);
      for (const auto& w : result.stats.warnings) util::warn(w);
      if (result.stats.unreadable > 0 && result.incomplete.empty()) {
        const auto& first = result.stats.unreadable_entries.front();
        result.incomplete = "snapshot " + result.snapshot.value("snapshot_id", std::string()) + " is incomplete: " +
                            std::to_string(result.stats.unreadable) + " entr" +
                            (result.stats.unreadable == 1 ? "y" : "ies") + " could not be read (first: " + first.path +
                            ": " + first.reason + ")";
      }
      TreeCache(opts.state_dir / "trees.db").put(trees);  // an apply reads this snapshot's trees here
      try {
        scanned.next_cache.save(cache_file);
      } catch (const Error& e) {
        util::warn(std::string("files cache not saved: ") + e.what());
      }
      break;
    }
  };
  // With an order queued, this snapshot protects the state before it and is pinned.
  // An order for a snapshot (on request) is carried out by that snapshot itself.
  snapshot(has_order);
  if (has_order && next["order"]["spec"].value("type", "") == "snapshot") {
    std::string order_id = next["order"]["order_id"];
    json report = {{"snapshot_id", result.snapshot["snapshot_id"]}, {"wire_bytes", result.stats.bytes_sent},
                   {"unreadable", result.stats.unreadable}};
    client.call("order.report", {{"order_id", order_id}, {"device_id", opts.device_id}, {"state", "done"}, {"result", report}});
    report["order_id"] = order_id;
    result.order = report;
  } else if (has_order) {
    ApplyOrderOptions ao;
    ao.root = opts.root;
    ao.device_id = opts.device_id;
    ao.state_dir = opts.state_dir;
    ao.snapshot = result.snapshot;
    ao.more_connections = opts.more_connections;
    ao.progress = opts.apply_progress;
    ao.crash_point = opts.crash_point;
    result.order = apply_order(client, next, ao);
    result.protected_by = result.snapshot;
    snapshot(false);  // the state after the apply
  } else {
    json hooks;
    if (!run_pending_hooks(opts.root, opts.state_dir, &hooks)) result.order = {{"hooks", hooks}};
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

json resolve_snapshot(Client& client, const std::string& device, const std::string& spec) {
  json list = client.call("snapshot.list", {{"device_id", device}})["snapshots"];
  if (list.empty()) throw Error(ErrorKind::not_found, "device " + device + ": no snapshots");
  if (spec.empty() || spec == "latest") return list.back();
  std::vector<json> matches;
  for (const auto& s : list)
    if (s["snapshot_id"].get<std::string>().rfind(spec, 0) == 0) matches.push_back(s);
  if (matches.size() == 1) return matches.front();
  if (matches.size() > 1) throw Error(ErrorKind::usage, "snapshot prefix " + spec + " is ambiguous");
  if (auto upper = util::parse_time_upper(spec)) {
    json best;
    for (const auto& s : list)
      if (s["time_ns"].get<int64_t>() <= *upper) best = s;
    if (best.is_null()) throw Error(ErrorKind::not_found, "device " + device + ": no snapshot at or before " + spec);
    return best;
  }
  throw Error(ErrorKind::not_found, "device " + device + ": no snapshot " + spec + " (an id, 'latest' or a date)");
}

materialize::RestoreStats restore(Client& client, const json& snapshot, const std::vector<std::string>& paths,
                                  const fs::path& to, std::function<void(uint64_t)> progress,
                                  ConnectionFactory more_connections) {
  materialize::RestoreOptions ro;
  ro.to = to;
  ro.paths = paths;
  ro.root = tree::decode_entry_hex(snapshot.at("root").get<std::string>(), "snapshot root");
  ro.tree = ro.root.subtree;
  ro.progress = std::move(progress);
  ProtocolSource source(client, std::move(more_connections));
  auto stats = materialize::restore(ro, source);
  stats.wire_bytes = source.bytes_received();
  return stats;
}

}  // namespace mirage::client
