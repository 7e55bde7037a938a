#include "libmirage/server/service.hpp"

#include <unistd.h>

#include <cassert>
#include <chrono>
#include <unordered_set>

#include "libmirage/policy/upload_policy.hpp"
#include "libmirage/server/housekeeping.hpp"
#include "libmirage/server/params.hpp"
#include "libmirage/server/roles.hpp"
#include "libmirage/store/volume.hpp"
#include "libmirage/tree/tree.hpp"
#include "libmirage/util/clock.hpp"
#include "libmirage/util/hex.hpp"
#include "libmirage/util/log.hpp"
#include "libmirage/util/bytes.hpp"
#include "libmirage/util/zstd.hpp"

namespace mirage::server {

using nlohmann::json;
using util::Digest;

namespace {

const std::string k_unknown_method = "unknown";

/// `text` cut to `max` bytes with anything but printable ASCII as '?', for messages
/// that quote what a client sent.
std::string printable(const std::string& text, size_t max) {
  std::string out = text.substr(0, max);
  for (char& c : out)
    if (c < 0x20 || c > 0x7e) c = '?';
  return text.size() > max ? out + "..." : out;
}

constexpr size_t k_max_hostname = 253;  // a DNS name (RFC 1035): fixed, listed by `mirage-serverd limits`

/// Makes a bearer token, stores its SHA-256 under `name` and `role`, and returns the
/// secret (shown once).
std::string issue_token(catalog::Catalog& cat, const std::string& name, const std::string& role, int64_t expires_at = 0) {
  std::string token = "mrg_" + util::random_hex(24);
  cat.add_token(util::sha256_hex(token), name, role, expires_at);
  return token;
}

/// A token's reply: its name, role, secret and expiry (null: never).
json token_reply(const std::string& name, const std::string& role, const std::string& token, int64_t expires) {
  return {{"name", name}, {"role", role}, {"token", token}, {"expires", expires ? json(util::rfc3339(expires)) : json(nullptr)}};
}

/// When a token made now expires (ns since the epoch) from "expires_seconds"; 0: never.
int64_t expiry(const json& params) {
  double seconds = num_param(params, "expires_seconds", 0, 0, 100.0 * 365 * 86400);
  return seconds > 0 ? util::now_ns() + static_cast<int64_t>(seconds * 1e9) : 0;
}

bool valid_device_id(const std::string& id) {
  if (id.empty() || id.size() > 128 || id == "." || id == "..") return false;
  for (char c : id)
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == ':')) return false;
  return true;
}

}  // namespace

namespace {
thread_local store::Repository* t_repo = nullptr;  // the lease of the request this thread serves
}  // namespace

Service::Service(std::filesystem::path data, bool create, Limits limits) : m_data(std::move(data)), m_limits(limits) {
  // The first connection creates a missing data directory (or refuses one that is not).
  m_pool.push_back(std::make_unique<store::Repository>(m_data, create));
  register_handlers();
}

Service::Lease::Lease(Service& service) : m_service(service), m_outer(t_repo) {
  if (m_outer) return;  // nested: the thread keeps the repository it has
  {
    std::lock_guard lock(service.m_pool_mutex);
    m_generation = service.m_generation;
    if (!service.m_pool.empty()) {
      m_repo = std::move(service.m_pool.back());
      service.m_pool.pop_back();
    }
  }
  // A new connection opened after a GC began may still see its packs: it counts as of
  // the generation read above, and drops its read descriptors when it comes back.
  if (!m_repo) m_repo = std::make_unique<store::Repository>(service.m_data, false);
  t_repo = m_repo.get();
}

Service::Lease::~Lease() {
  if (m_outer) return;
  t_repo = nullptr;
  std::lock_guard lock(m_service.m_pool_mutex);
  // A GC ran meanwhile: let the packs it deleted go (the idle ones were closed then).
  if (m_generation != m_service.m_generation) m_repo->close_read_fds();
  if (m_service.m_pool.size() < 64) m_service.m_pool.push_back(std::move(m_repo));
}

store::Repository& Service::repo() {
  assert(t_repo && "repo() outside a Lease");
  return *t_repo;
}

std::optional<Caller> Service::authenticate(const std::string& token) {
  Lease lease(*this);
  if (token.rfind("mdc_", 0) == 0) {
    // A device credential: mdc_DEVICE.SECRET, valid once the device is accepted.
    auto dot = token.rfind('.');
    if (dot == std::string::npos || dot < 5) return std::nullopt;
    std::string device = token.substr(4, dot - 4);
    auto hash = repo().catalog().device_credential(device);
    auto d = repo().catalog().device(device);
    if (!hash || !d || *hash != util::sha256_hex(token.substr(dot + 1))) return std::nullopt;
    // The right secret of a device not (or no longer) accepted: say which, so that a
    // pending endpoint waits (exit 5) instead of taking its credential for revoked.
    if (d->state == catalog::DeviceState::pending)
      throw Error(ErrorKind::precondition, "device " + device + ": pending (an admin must accept it)");
    if (d->state == catalog::DeviceState::rejected) throw Error(ErrorKind::permission, "device " + device + ": rejected");
    return Caller{"device", device};
  }
  auto t = repo().catalog().token_role(util::sha256_hex(token));
  if (!t) return std::nullopt;
  return Caller{t->first, t->second};
}

catalog::Device Service::accepted_device(const std::string& id) {
  auto d = repo().catalog().device(id);
  if (!d) throw Error(ErrorKind::not_found, "device " + id + ": not registered");
  if (d->state == catalog::DeviceState::rejected) throw Error(ErrorKind::permission, "device " + id + ": rejected");
  if (d->state == catalog::DeviceState::pending)
    throw Error(ErrorKind::precondition, "device " + id + ": pending (an admin must accept it)");
  return *d;
}

namespace {

/// The previous snapshot's directory at the same path, as a commit's check compares
/// against it: one MTR1 object, or an index whose pieces are decoded only where a new
/// piece's names fall (so the check holds one piece of either side at a time).
class PreviousDir {
 public:
  PreviousDir(const std::optional<Digest>& id, const tree::Fetch& fetch) : m_fetch(fetch) {
    if (!id) return;
    std::vector<uint8_t> data;
    try {
      data = fetch(*id);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::not_found) throw;
      return;
    }
    if (tree::is_index(data)) {
      m_index = tree::decode_index(data, "tree " + id->hex());
      for (const auto& p : m_index) m_pieces.insert(p.id);
    } else if (tree::entry_count(data, "tree " + id->hex()) <= tree::k_piece_max_entries) {
      m_whole = tree::decode(data, "tree " + id->hex());
    }  // else an object too large to hold: nothing to compare with (everything is checked)
  }
  /// True when the previous directory has this very piece (already verified).
  bool has_piece(const Digest& id) const { return m_pieces.count(id) != 0; }
  /// The previous entries with names in [first, last] of `piece`.
  const tree::Tree& around(const tree::Tree& piece) {
    if (m_index.empty()) return m_whole;
    m_around.entries.clear();
    const std::string &lo = piece.entries.front().name, &hi = piece.entries.back().name;
    for (size_t j = 0; j < m_index.size(); ++j) {
      bool starts_in = m_index[j].first <= hi, ends_after = j + 1 == m_index.size() || m_index[j + 1].first > lo;
      if (!starts_in || !ends_after) continue;
      try {
        auto old = tree::decode(m_fetch(m_index[j].id), "tree piece " + m_index[j].id.hex());
        if (old.entries.size() > tree::k_piece_max_entries) continue;
        m_around.entries.insert(m_around.entries.end(), old.entries.begin(), old.entries.end());
      } catch (const Error& e) {
        if (e.kind() != ErrorKind::not_found) throw;
      }
    }
    return m_around;
  }

 private:
  const tree::Fetch& m_fetch;
  std::vector<tree::Piece> m_index;
  std::unordered_set<Digest, util::DigestHash> m_pieces;
  tree::Tree m_whole, m_around;
};

}  // namespace

void Service::verify_closure(const Digest& tree_id, const std::optional<Digest>& previous, const std::string& device) {
  // Walk the new snapshot, skipping subtrees (and pieces of split directories) equal to
  // the previous snapshot's at the same path, already verified when that one was
  // committed, and every tree already walked: a tree shared by many paths is read once,
  // so the work is bounded by the distinct trees the snapshot has, not by the paths they
  // make. A directory is walked a piece at a time and a new MTR1 object may hold at most
  // k_piece_max_entries entries, so the memory of one commit's check is bounded too.
  auto& cat = repo().catalog();
  uint64_t missing = 0;
  std::string first;
  std::unordered_set<Digest, util::DigestHash> walked;
  tree::Fetch fetch = [&](const Digest& d) {
    if (!cat.find_chunk(d)) throw Error(ErrorKind::not_found, "tree object " + d.hex());
    return repo().read_plain(d);
  };
  std::vector<std::tuple<Digest, std::optional<Digest>, std::string>> stack{{tree_id, previous, "/"}};
  while (!stack.empty()) {
    auto [id, old, path] = stack.back();
    stack.pop_back();
    if (old && *old == id) continue;
    if (!walked.insert(id).second) continue;
    PreviousDir before_dir(old, fetch);
    auto check_piece = [&](const Digest& object, const tree::Tree& piece) {
      if (object != id && before_dir.has_piece(object)) return;
      if (piece.entries.empty()) return;
      const tree::Tree& old_tree = before_dir.around(piece);
      for (const auto& e : piece.entries) {
        const tree::Entry* before = old_tree.find(e.name);
        if (e.kind == tree::Kind::dir) {
          std::optional<Digest> prev;
          if (before && before->kind == tree::Kind::dir) prev = before->subtree;
          stack.push_back({e.subtree, prev, tree::child_path(path, e.name)});
          continue;
        }
        if (before && before->chunks == e.chunks) continue;
        for (const auto& c : e.chunks) {
          if (!cat.find_chunk(c.id)) {
            missing++;
            if (first.empty()) first = tree::child_path(path, e.name);
          }
        }
      }
    };
    // A directory's objects (one, or an index and its pieces) are all there or it counts missing.
    try {
      tree::for_each_piece(id, fetch, "tree " + id.hex() + " (" + path + ")", check_piece, tree::k_piece_max_entries);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::not_found) throw;
      missing++;
      if (first.empty()) first = "tree of " + path;
    }
  }
  if (missing)
    throw Error(ErrorKind::precondition, "snapshot of device " + device + " is incomplete: " + std::to_string(missing) +
                                             " objects missing (first: " + first + ")", std::string(proto::k_reason_incomplete));
}

void Service::register_handlers() {
  m_handlers["server.info"] = [this](proto::Request&, proto::Reply& reply, const Caller& caller) {
    reply.result = {{"version", MIRAGE_VERSION}, {"protocol", proto::k_protocol_version}, {"role", caller.role}};
    // Where the data lives is for admins only (a device or a stranger has no use for it).
    if (caller.role == "admin") reply.result["data"] = repo().path().string();
  };

  m_handlers["device.register"] = [this](proto::Request& req, proto::Reply& reply, const Caller& caller) {
    std::string id = str_param(req.params, "device_id");
    if (!valid_device_id(id))
      throw Error(ErrorKind::usage, "device id '" + printable(id, 140) + "': use letters, digits and - _ . : (at most 128)");
    std::string hostname = req.params.value("hostname", "");
    if (hostname.size() > k_max_hostname || hostname != printable(hostname, k_max_hostname))
      throw Error(ErrorKind::usage, "hostname: at most " + std::to_string(k_max_hostname) + " printable characters");
    json inventory = req.params.value("inventory", json::object());
    if (!inventory.is_object() || inventory.dump().size() > m_limits.inventory)
      throw Error(ErrorKind::usage, "inventory: a JSON object of at most " + std::to_string(m_limits.inventory) +
                                        " bytes (limit inventory)");
    auto& cat = repo().catalog();
    catalog::Transaction tx(cat);
    auto d = cat.device(id);
    std::string credential = req.params.value("credential_hash", "");
    if (!credential.empty() && (credential.size() != 64 || !util::from_hex(credential)))
      throw Error(ErrorKind::usage, "credential_hash: expected 64 hex digits");
    auto enrolled = cat.device_credential(id);
    bool admin = caller.role == "admin", itself = caller.role == "device" && caller.name == id;
    // Anyone may register a new device (it waits, pending, for an admin); an enrolled
    // one is re-registered only by itself (its credential) or an admin. A known device
    // without a credential on file is never given one by whoever asks first: an admin
    // re-enrolls it (mirage device delete, then it registers anew).
    if (d && enrolled && !admin && !itself)
      throw Error(ErrorKind::permission, "device " + id + " is already enrolled; it must use its credential");
    if (d && !enrolled && !admin)
      throw Error(ErrorKind::permission, "device " + id + " has no credential on file; an admin must re-enroll it "
                                         "(mirage device delete " + id + ")");
    if (!d && !admin && static_cast<uint64_t>(cat.device_count(catalog::DeviceState::pending)) >= m_limits.pending_devices)
      throw Error(ErrorKind::unavailable, "too many devices wait for acceptance (" + std::to_string(m_limits.pending_devices) +
                                              ", limit pending-devices); an admin must accept or reject some first");
    if (!credential.empty() && (!d || admin)) cat.set_device_credential(id, credential);
    if (!d) {
      catalog::Device nd;
      nd.id = id;
      nd.hostname = hostname;
      nd.inventory = inventory;
      nd.registered_at = nd.last_seen = util::now_ns();
      cat.add_device(nd);
      cat.add_event("device.registered", id, {{"hostname", hostname}});
      d = nd;
    } else {
      cat.touch_device(id, hostname, inventory);
    }
    tx.commit();
    json j = *d;
    reply.result = j;
  };

  m_handlers["device.delete"] = [this](proto::Request& req, proto::Reply& reply, const Caller& caller) {
    std::string id = str_param(req.params, "device_id");
    auto& cat = repo().catalog();
    catalog::Transaction tx(cat);
    if (!cat.device(id)) throw Error(ErrorKind::not_found, "device " + id + ": not registered");
    auto snapshots = cat.snapshots(id).size();
    if (snapshots > 0 && !bool_param(req.params, "force"))
      throw Error(ErrorKind::precondition, "device " + id + " has " + std::to_string(snapshots) +
                                               " snapshots; --force deletes them with it");
    cat.delete_device(id);
    cat.add_event("device.deleted", id, {{"by", caller.name}, {"snapshots", snapshots}});
    tx.commit();
    reply.result = {{"device_id", id}, {"deleted", true}, {"snapshots", snapshots}};
  };

  m_handlers["device.list"] = [this](proto::Request& req, proto::Reply& reply, const Caller&) {
    std::optional<catalog::DeviceState> state;
    if (req.params.contains("state")) {
      std::string s = str_param(req.params, "state");
      if (s != "pending" && s != "accepted" && s != "rejected")
        throw Error(ErrorKind::usage, "state '" + s + "': expected pending, accepted or rejected");
      state = catalog::state_from_name(s);
    }
    reply.result = {{"devices", repo().catalog().devices(state)}};
  };

  auto set_state = [this](proto::Request& req, proto::Reply& reply, const Caller& caller, catalog::DeviceState state) {
    std::string id = str_param(req.params, "device_id");
    auto& cat = repo().catalog();
    auto d = cat.device(id);
    if (!d) throw Error(ErrorKind::not_found, "device " + id + ": not registered");
    bool reference = state == catalog::DeviceState::accepted && bool_param(req.params, "reference");
    if (req.params.contains("policy")) {
      std::string policy = str_param(req.params, "policy");
      if (policy != "default" && !cat.policy(policy)) throw Error(ErrorKind::not_found, "policy " + policy + ": not found");
      cat.set_device_policy(id, policy);
    }
    cat.set_device_state(id, state, reference);
    // A new CVD goes to the writable volume with the most free space.
    if (state == catalog::DeviceState::accepted && d->volume == 0) cat.set_device_volume(id, repo().choose_volume());
    cat.add_event(std::string("device.") + std::string(catalog::state_name(state)), id,
                  {{"by", caller.name}, {"reference", reference}});
    json j = *cat.device(id);
    reply.result = j;
  };
  m_handlers["device.accept"] = [set_state](proto::Request& req, proto::Reply& reply, const Caller& c) {
    set_state(req, reply, c, catalog::DeviceState::accepted);
  };
  m_handlers["device.reject"] = [set_state](proto::Request& req, proto::Reply& reply, const Caller& c) {
    set_state(req, reply, c, catalog::DeviceState::rejected);
  };

  m_handlers["policy.get"] = [this](proto::Request& req, proto::Reply& reply, const Caller&) {
    std::string name = req.params.value("name", "default");
    if (req.params.contains("device_id")) name = accepted_device(str_param(req.params, "device_id")).policy;
    auto doc = repo().catalog().policy(name);
    if (!doc && name != "default") throw Error(ErrorKind::not_found, "policy " + name + ": not found");
    reply.result = {{"name", name}, {"policy", doc ? policy::policy_document(*doc) : policy::default_policy_document()}};
  };

  m_handlers["policy.set"] = [this](proto::Request& req, proto::Reply& reply, const Caller& caller) {
    std::string name = str_param(req.params, "name");
    if (!req.params.contains("policy")) throw Error(ErrorKind::usage, "missing parameter 'policy'");
    if (!valid_device_id(name)) throw Error(ErrorKind::usage, "policy name '" + name + "': use letters, digits and - _ . :");
    json doc = policy::policy_document(req.params["policy"]);  // validates, fills defaults
    repo().catalog().set_policy(name, doc);
    repo().catalog().add_event("policy.set", "", {{"name", name}, {"by", caller.name}});
    reply.result = {{"name", name}, {"policy", doc}};
  };

  m_handlers["chunks.missing"] = [this](proto::Request& req, proto::Reply& reply, const Caller&) {
    auto ids = proto::decode_ids(req.binary);
    auto missing = repo().missing(ids);
    reply.binary.resize(ids.size());
    uint64_t n = 0;
    for (size_t i = 0; i < ids.size(); ++i) {
      reply.binary[i] = missing[i] ? 1 : 0;
      n += missing[i];
    }
    reply.result = {{"count", ids.size()}, {"missing", n}};
  };

  m_handlers["chunks.put"] = [this](proto::Request& req, proto::Reply& reply, const Caller& caller) {
    int64_t volume = 0;  // captures: the volume with the most free space
    // Endpoints upload to their own CVD (on its volume); image managers upload captures.
    bool endpoint = req.params.contains("device_id");
    if (endpoint) volume = accepted_device(str_param(req.params, "device_id")).volume;
    // Decode and re-hash every chunk: a forged id is refused here.
    auto records = store::verify_upload(req.binary);
    // Pinned for GC until this device's (or capture's) commit.
    std::string source = endpoint ? str_param(req.params, "device_id") : "capture:" + caller.name;
    repo().catalog().touch_upload(source);
    auto stats = repo().put(records, volume);
    m_metrics.uploaded(stats.chunks, stats.new_chunks, stats.stored_bytes);
    reply.result = {{"chunks", stats.chunks},
                    {"new_chunks", stats.new_chunks},
                    {"stored_bytes", stats.stored_bytes},
                    {"raw_bytes", stats.raw_bytes}};
  };

  m_handlers["chunks.get"] = [this](proto::Request& req, proto::Reply& reply, const Caller&) {
    auto ids = proto::decode_ids(req.binary);
    if (ids.size() > m_limits.get_ids)
      throw Error(ErrorKind::usage, "chunks.get: at most " + std::to_string(m_limits.get_ids) + " ids per request (limit get-ids)");
    repo().read_records(ids, reply.binary);
    if (reply.binary.size() > proto::k_max_binary) throw Error(ErrorKind::usage, "chunks.get: reply too large");
    reply.result = {{"count", ids.size()}};
  };

  m_handlers["chunks.delta"] = [this](proto::Request& req, proto::Reply& reply, const Caller&) {
    auto ids = proto::decode_ids(req.binary);
    if (ids.size() % 2) throw Error(ErrorKind::usage, "chunks.delta: expected (wanted, base) id pairs");
    if (ids.size() / 2 > m_limits.delta_pairs)
      throw Error(ErrorKind::usage, "chunks.delta: at most " + std::to_string(m_limits.delta_pairs) +
                                        " pairs per request (limit delta-pairs)");
    // Deltas are for file chunks (at most 256 KiB): a larger pair, or pairs past a
    // budget of work per request (plaintext compressed), get "no delta" and the client
    // fetches them whole.
    uint64_t work = 0;
    util::ByteWriter out;
    for (size_t i = 0; i < ids.size(); i += 2) {
      out.raw(ids[i].bytes);
      auto wanted_at = repo().catalog().find_chunk(ids[i]);
      if (!wanted_at) throw Error(ErrorKind::not_found, "chunk " + ids[i].hex() + ": not in the store");
      out.u32le(wanted_at->raw);
      auto base_at = repo().catalog().find_chunk(ids[i + 1]);
      if (!base_at || wanted_at->raw > m_limits.delta_chunk || base_at->raw > m_limits.delta_chunk ||
          (work += wanted_at->raw + base_at->raw) > m_limits.delta_work) {
        out.u32le(0xffffffffu);
        continue;
      }
      auto frame = util::zstd_compress_delta(repo().read_plain(ids[i]), repo().read_plain(ids[i + 1]), 3);
      out.u32le(static_cast<uint32_t>(frame.size()));
      out.raw(frame);
    }
    reply.binary = out.take();
    reply.result = {{"count", ids.size() / 2}};
  };

  m_handlers["snapshot.commit"] = [this](proto::Request& req, proto::Reply& reply, const Caller&) {
    std::string device = str_param(req.params, "device_id");
    accepted_device(device);
    Digest tree_id = Digest::parse(str_param(req.params, "tree"), "tree");
    auto root_raw = util::from_hex(str_param(req.params, "root"));
    if (!root_raw) throw Error(ErrorKind::usage, "parameter 'root' is not hex");
    std::vector<uint8_t> root(root_raw->begin(), root_raw->end());
    tree::Entry root_entry = tree::decode_entry(root, "root entry");
    if (root_entry.kind != tree::Kind::dir || root_entry.subtree != tree_id)
      throw Error(ErrorKind::usage, "root entry does not describe the snapshot's tree");
    auto& cat = repo().catalog();
    catalog::Transaction tx(cat);  // verification and insert see one state
    auto previous = cat.snapshots(device);
    std::optional<Digest> prev;
    if (!previous.empty()) prev = previous.back().tree;
    verify_closure(tree_id, prev, device);
    catalog::Snapshot snap;
    snap.id = util::random_hex(8);
    snap.device = device;
    snap.tree = tree_id;
    snap.root = root;
    snap.created_at = util::now_ns();
    if (!previous.empty() && snap.created_at <= previous.back().created_at) snap.created_at = previous.back().created_at + 1;
    snap.stats = req.params.value("stats", json::object());
    if (!snap.stats.is_object() || snap.stats.dump().size() > m_limits.stats)
      throw Error(ErrorKind::usage, "stats: a JSON object of at most " + std::to_string(m_limits.stats) + " bytes (limit stats)");
    snap.pinned = bool_param(req.params, "pinned");
    cat.add_snapshot(snap);
    // The transaction log: the first upload of a CVD is its centralization.
    cat.add_event("snapshot.created", device,
                  {{"snapshot_id", snap.id}, {"transaction", previous.empty() ? "centralize" : "upload"},
                   {"bytes_moved", snap.stats.value("bytes_sent", uint64_t(0))},
                   {"unique_bytes", snap.stats.value("bytes_new", uint64_t(0))}, {"pinned", snap.pinned},
                   {"stats", snap.stats}});
    auto expired = expire_snapshots(cat, device);
    cat.end_upload(device);
    tx.commit();
    repo().note_commit(snap.id, device);
    json j = snap;
    j["expired"] = expired;
    j["root"] = util::to_hex(snap.root);
    reply.result = j;
  };

  m_handlers["snapshot.list"] = [this](proto::Request& req, proto::Reply& reply, const Caller&) {
    std::string device = str_param(req.params, "device_id");
    auto& cat = repo().catalog();
    auto d = cat.device(device);
    if (!d) throw Error(ErrorKind::not_found, "device " + device + ": not registered");
    json list = json::array();
    auto cvds = cat.cvds(device);
    auto snapshots = cat.snapshots(device);
    auto tiers = snapshot_tiers(cat, *d, snapshots);
    for (size_t i = 0; i < snapshots.size(); ++i) {
      const auto& s = snapshots[i];
      json j = s;
      j["kept_by"] = tiers[i];
      j["root"] = util::to_hex(s.root);
      int64_t cvd = 1;  // a provision starts a new CVD; its snapshots count from then on
      for (const auto& [number, started] : cvds)
        if (s.created_at >= started) cvd = number;
      j["cvd"] = cvd;
      list.push_back(j);
    }
    reply.result = {{"device_id", device}, {"snapshots", list}};
  };

  register_layer_handlers();
  register_fleet_handlers();

  m_handlers["token.create"] = [this](proto::Request& req, proto::Reply& reply, const Caller& caller) {
    std::string name = str_param(req.params, "name");
    std::string role = str_param(req.params, "role");
    if (!valid_role(role))
      throw Error(ErrorKind::usage, "role '" + role + "': expected admin, image-manager, protection-manager or helpdesk");
    if (name.size() > 100) throw Error(ErrorKind::usage, "token name: at most 100 characters");
    auto& cat = repo().catalog();
    catalog::Transaction tx(cat);
    if (cat.token_name_taken(name)) throw Error(ErrorKind::precondition, "a live token is already named " + name);
    int64_t expires = expiry(req.params);
    std::string token = issue_token(cat, name, role, expires);
    cat.add_event("token.created", "", {{"name", name}, {"role", role}, {"by", caller.name}});
    tx.commit();
    reply.result = token_reply(name, role, token, expires);
  };
  m_handlers["token.rotate"] = [this](proto::Request& req, proto::Reply& reply, const Caller& caller) {
    // A new secret for the same name and role; the old one stops working at once.
    std::string name = str_param(req.params, "name");
    auto& cat = repo().catalog();
    catalog::Transaction tx(cat);
    auto role = cat.live_token_role(name);
    if (!role) throw Error(ErrorKind::not_found, "no live token named " + name);
    int64_t expires = expiry(req.params);
    cat.revoke_token(name);
    std::string token = issue_token(cat, name, *role, expires);
    cat.add_event("token.rotated", "", {{"name", name}, {"role", *role}, {"by", caller.name}});
    tx.commit();
    reply.result = token_reply(name, *role, token, expires);
  };
  m_handlers["token.list"] = [this](proto::Request&, proto::Reply& reply, const Caller&) {
    reply.result = {{"tokens", repo().catalog().tokens()}};
  };
  m_handlers["token.revoke"] = [this](proto::Request& req, proto::Reply& reply, const Caller& caller) {
    std::string name = str_param(req.params, "name");
    auto& cat = repo().catalog();
    catalog::Transaction tx(cat);
    if (cat.live_token_role(name) == "admin" && cat.live_admin_tokens() <= 1)
      throw Error(ErrorKind::precondition, "token " + name + " is the last live admin token; create another admin "
                                           "token first (or rotate this one)");
    if (cat.revoke_token(name) == 0) throw Error(ErrorKind::not_found, "no live token named " + name);
    cat.add_event("token.revoked", "", {{"name", name}, {"by", caller.name}});
    tx.commit();
    reply.result = {{"name", name}, {"revoked", true}};
  };

  m_handlers["events.list"] = [this](proto::Request& req, proto::Reply& reply, const Caller&) {
    std::string device = req.params.value("device_id", "");
    int64_t since = 0;
    if (req.params.contains("since")) {
      auto t = util::parse_time_lower(str_param(req.params, "since"));
      if (!t) throw Error(ErrorKind::usage, "since: expected a date such as 2026-11-25 or 2026-11-25T10:00:00Z");
      since = *t;
    }
    int64_t after = req.params.value("after_id", int64_t{0});
    reply.result = {{"events", repo().catalog().events(device, since, after, req.params.value("type", ""))}};
  };

  m_handlers["check"] = [this](proto::Request& req, proto::Reply& reply, const Caller&) {
    // Progress goes to the log sink: over stdio that is the user's terminal.
    json repaired;
    if (bool_param(req.params, "repair")) {
      repaired = repo().repair([](uint64_t done, uint64_t total) {
        util::log(util::LogLevel::progress, "repairing: " + std::to_string(done) + " of " + std::to_string(total) + " packs");
      });
      repo().catalog().add_event("check.repair", "", repaired);
    }
    json j = repo().check(bool_param(req.params, "read_data"), [](uint64_t done, uint64_t total) {
      util::log(util::LogLevel::progress, "checking: " + std::to_string(done) + " of " + std::to_string(total) + " chunks");
    });
    util::log(util::LogLevel::progress, "");
    if (!repaired.is_null()) j["repair"] = repaired;
    reply.result = j;
  };
}

std::string Service::metrics_text() {
  Lease lease(*this);
  return m_metrics.render(repo().catalog());
}

json Service::run_gc(const store::GcOptions& options) {
  json report = server::run_gc(m_data, options);
  if (options.dry_run) return report;
  {
    // The packs GC deleted keep their disk space while this process holds them open:
    // idle connections let them go now, leased ones when they come back.
    std::lock_guard lock(m_pool_mutex);
    m_generation++;
    for (auto& r : m_pool) r->close_read_fds();
  }
  m_metrics.gc_run(report.value("deleted_bytes", uint64_t(0)), report.value("freed_bytes", uint64_t(0)));
  return report;
}

void Service::ensure_volume(const std::string& path) {
  Lease lease(*this);
  std::lock_guard lock(m_fleet_mutex);
  auto& cat = repo().catalog();
  catalog::Transaction tx(cat);
  for (const auto& v : cat.volumes())
    if (v.path == path) return;
  store::open_volume(path)->init();
  int64_t id = cat.add_volume(path);
  cat.add_event("volume.added", "", {{"volume_id", id}, {"path", path}, {"by", "mirage-serverd --volume"}});
  tx.commit();
}

std::unique_lock<std::mutex> Service::lock_for(const std::string& method, const json& params, const Caller& caller) {
  switch (concurrency(method)) {
    case Concurrency::parallel: return {};
    case Concurrency::fleet: return std::unique_lock(m_fleet_mutex);
    case Concurrency::device: {
      // A device's own requests name it by their credential; an admin's by device_id.
      std::string device = caller.role == "device" ? caller.name : params.value("device_id", std::string());
      return std::unique_lock(m_device_mutexes[std::hash<std::string>{}(device) % m_device_mutexes.size()]);
    }
  }
  return {};
}

proto::Reply Service::handle(proto::Request request, const Caller& caller) {
  proto::Reply reply;
  reply.id = request.id;
  auto it = m_handlers.find(request.method);
  // Metrics label only the methods there are: a request cannot make up a label.
  const std::string& label = it == m_handlers.end() ? k_unknown_method : it->first;
  auto started = std::chrono::steady_clock::now();
  struct Record {  // counts the request however it ends
    Metrics& metrics;
    const std::string& method;
    const proto::Reply& reply;
    std::chrono::steady_clock::time_point started;
    ~Record() {
      metrics.request(method, reply.error ? std::string(kind_name(reply.error->kind())) : "ok",
                      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    }
  } record{m_metrics, label, reply, started};
  try {
    if (it == m_handlers.end()) throw Error(ErrorKind::usage, "unknown method '" + printable(request.method, 100) + "'");
    check_role(request.method, request.params, caller);
    Lease lease(*this);
    {
      auto lock = lock_for(request.method, request.params, caller);
      it->second(request, reply, caller);
    }
    if (audited(request.method) && !(request.method == "order.create" && bool_param(request.params, "dry_run"))) {
      json params = request.params;
      if (std::string text = params.dump(); text.size() > 4000) params = text.substr(0, 4000) + "...";
      repo().catalog().add_event("audit", "", {{"method", request.method}, {"by", caller.name.empty() ? "local" : caller.name},
                                               {"role", caller.role}, {"params", params}});
    }
  } catch (const Error& e) {
    reply = proto::Reply{request.id, json::object(), e, {}};
  } catch (const std::exception& e) {
    reply = proto::Reply{request.id, json::object(), Error(ErrorKind::failed, e.what()), {}};
  }
  return reply;
}

std::string init_data_dir(const std::filesystem::path& data) {
  store::Repository repo(data, true);
  if (repo.catalog().token_count("admin") > 0)
    throw Error(ErrorKind::precondition, "data directory " + data.string() + " is already initialized");
  std::string token = issue_token(repo.catalog(), "admin", "admin");
  repo.catalog().add_event("server.init", "", json::object());
  return token;
}

json repair_data_dir(const std::filesystem::path& data) {
  store::Repository repo(data, false, store::OrphanPacks::adopt);
  json report = repo.repair(nullptr);
  repo.catalog().add_event("check.repair", "", report);
  if (repo.catalog().live_admin_tokens() == 0) {
    report["admin_token"] = issue_token(repo.catalog(), "admin", "admin");
  }
  report["check"] = repo.check(false, nullptr);
  return report;
}

}  // namespace mirage::server
