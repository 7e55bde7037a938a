// Snapshots: a commit (checked to reach only stored objects), the list with the tiers
// that keep each, and snapshots on request (orders of type snapshot).
#include <algorithm>
#include <unordered_set>

#include "libmirage/server/housekeeping.hpp"
#include "libmirage/server/methods.hpp"
#include "libmirage/tree/tree.hpp"
#include "libmirage/util/clock.hpp"
#include "libmirage/util/hex.hpp"

namespace mirage::server {

using nlohmann::json;
using util::Digest;

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

/// What a commit's check found missing, in the order of its walk. Files' chunks are
/// looked up a batch at a time, in id order (ChunkIndex::find_chunks: one pass over the
/// index's pages, not one random descent per chunk); "first" is still the first in walk
/// order, a file's or a tree's. A batch holds at most k_batch chunk ids and k_batch_bytes
/// of names (a file's path is made only if it is named).
class MissingObjects {
 public:
  explicit MissingObjects(catalog::ChunkIndex& index) : m_index(index) {}
  /// The chunks of file `name` in directory `dir`.
  void check_file(const std::string& dir, const std::string& name, std::span<const tree::ChunkRef> chunks) {
    if (m_dirs.empty() || m_dirs.back() != dir) {
      m_dirs.push_back(dir);
      m_bytes += dir.size();
    }
    for (const auto& c : chunks) m_chunks.push_back({c.id, m_files.size()});
    m_files.push_back({m_seq++, m_dirs.size() - 1, name});
    m_bytes += name.size();
    if (m_chunks.size() >= k_batch || m_bytes >= k_batch_bytes) flush();
  }
  /// An object missing now (a tree).
  void note(std::string what) { found(m_seq++, [&] { return std::move(what); }); }
  void flush() {
    std::vector<Digest> ids;
    ids.reserve(m_chunks.size());
    for (const auto& c : m_chunks) ids.push_back(c.first);
    auto locations = m_index.find_chunks(ids);
    for (size_t i = 0; i < locations.size(); ++i) {
      if (locations[i]) continue;
      const File& f = m_files[m_chunks[i].second];
      found(f.seq, [&] { return tree::child_path(m_dirs[f.dir], f.name); });
    }
    m_chunks.clear();
    m_files.clear();
    m_dirs.clear();
    m_bytes = 0;
  }
  uint64_t count() const { return m_count; }
  const std::string& first() const { return m_first; }

 private:
  static constexpr size_t k_batch = 1 << 16, k_batch_bytes = 16u << 20;
  struct File {
    uint64_t seq;  ///< walk order
    size_t dir;    ///< in m_dirs
    std::string name;
  };
  template <class Name>
  void found(uint64_t seq, Name name) {
    if (m_count++ == 0 || seq < m_first_seq) {
      m_first_seq = seq;
      m_first = name();
    }
  }
  catalog::ChunkIndex& m_index;
  std::vector<std::pair<Digest, size_t>> m_chunks;  ///< (chunk, file) not yet looked up
  std::vector<File> m_files;
  std::vector<std::string> m_dirs;
  size_t m_bytes = 0;
  uint64_t m_seq = 0, m_count = 0, m_first_seq = 0;
  std::string m_first;
};

}  // namespace

void verify_closure(store::Repository& repo, const Digest& tree_id, const std::optional<Digest>& previous, const std::string& device) {
  // Walk the new snapshot, skipping subtrees (and pieces of split directories) equal to
  // the previous snapshot's at the same path, already verified when that one was
  // committed, and every tree already walked: a tree shared by many paths is read once,
  // so the work is bounded by the distinct trees the snapshot has, not by the paths they
  // make. A directory is walked a piece at a time and a new MTR1 object may hold at most
  // k_piece_max_entries entries, and files' chunks are looked up a batch at a time, so
  // the memory of one commit's check is bounded too.
  MissingObjects missing(repo.catalog().chunks());
  std::unordered_set<Digest, util::DigestHash> walked;
  tree::Fetch fetch = [&](const Digest& d) { return repo.read_plain(d); };  // not_found when absent
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
        if (!e.chunks.empty()) missing.check_file(path, e.name, e.chunks);
      }
    };
    // A directory's objects (one, or an index and its pieces) are all there or it counts missing.
    try {
      tree::for_each_piece(id, fetch, "tree " + id.hex() + " (" + path + ")", check_piece, tree::k_piece_max_entries);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::not_found) throw;
      missing.note("tree of " + path);
    }
  }
  missing.flush();
  if (missing.count())
    throw Error(ErrorKind::precondition, "snapshot of " + device + " is incomplete: " + std::to_string(missing.count()) +
                                             " objects missing (first: " + missing.first() + ")", std::string(proto::k_reason_incomplete));
}

SnapshotCommit SnapshotCommit::parse(const Params& p) {
  SnapshotCommit s;
  s.device_id = p.text("device_id");
  s.tree = Digest::parse(p.text("tree"), "tree");
  auto root = util::from_hex(p.text("root"));
  if (!root) throw Error(ErrorKind::usage, "parameter 'root' is not hex");
  s.root.assign(root->begin(), root->end());
  tree::Entry entry = tree::decode_entry(s.root, "root entry");
  if (entry.kind != tree::Kind::dir || entry.subtree != s.tree)
    throw Error(ErrorKind::usage, "root entry does not describe the snapshot's tree");
  s.stats = p.object("stats", p.limits().stats, "stats");
  s.pinned = p.flag("pinned");
  return s;
}

void to_json(json& j, const SnapshotCommitted& r) {
  j = r.snapshot;
  j["expired"] = r.expired;
  j["root"] = util::to_hex(r.snapshot.root);
}

namespace {

/// A device pins the snapshot before an order's change: once per order pending (its
/// oldest), and not at all with none; otherwise its pin is not taken (the reply says
/// so), so a device cannot keep its history past retention by pinning it.
bool device_may_pin(catalog::Catalog& cat, const std::string& device, const std::vector<catalog::Snapshot>& previous) {
  auto pending = cat.orders(device, name(OrderState::pending));
  if (pending.empty()) return false;
  int64_t since = pending.front().created_at;
  for (const auto& o : pending) since = std::min(since, o.created_at);
  return std::none_of(previous.begin(), previous.end(), [&](const auto& s) { return s.pinned && s.created_at >= since; });
}

}  // namespace

SnapshotCommitted snapshot_commit(Context& c, const SnapshotCommit& p) {
  const std::string& device = p.device_id;
  accepted_device(c.cat(), device);
  auto& cat = c.cat();
  catalog::Transaction tx(cat);  // verification and insert see one state
  auto previous = cat.snapshots(device);
  std::optional<Digest> prev;
  if (!previous.empty()) prev = previous.back().tree;
  verify_closure(c.repo, p.tree, prev, "device " + device);
  catalog::Snapshot snap;
  snap.id = util::random_hex(8);
  snap.device = device;
  snap.tree = p.tree;
  snap.root = p.root;
  snap.created_at = util::now_ns();
  if (!previous.empty() && snap.created_at <= previous.back().created_at) snap.created_at = previous.back().created_at + 1;
  snap.stats = p.stats;
  snap.pinned = p.pinned && (c.caller.role != Role::device || device_may_pin(cat, device, previous));
  snap.given = cat.given(device);  // a revert to this snapshot gives these layers back
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
  c.repo.note_commit(snap.id, device);
  return {std::move(snap), std::move(expired)};
}

void to_json(json& j, const Snapshots& r) {
  json list = json::array();
  for (const auto& s : r.snapshots) {
    json one = s.snapshot;
    one["kept_by"] = s.kept_by;
    one["root"] = util::to_hex(s.snapshot.root);
    one["cvd"] = s.cvd;
    list.push_back(std::move(one));
  }
  j = {{"device_id", r.device_id}, {"snapshots", list}};
}

Snapshots snapshot_list(Context& c, const DeviceId& p) {
  auto& cat = c.cat();
  auto d = registered_device(cat, p.device_id);
  auto cvds = cat.cvds(p.device_id);
  auto snapshots = cat.snapshots(p.device_id);
  auto tiers = snapshot_tiers(cat, d, snapshots);
  Snapshots r{p.device_id, {}};
  for (size_t i = 0; i < snapshots.size(); ++i) {
    int64_t cvd = 1;  // a provision starts a new CVD; its snapshots count from then on
    for (const auto& [number, started] : cvds)
      if (snapshots[i].created_at >= started) cvd = number;
    r.snapshots.push_back({std::move(snapshots[i]), std::move(tiers[i]), cvd});
  }
  return r;
}

OrdersReply snapshot_request(Context& c, const SnapshotRequest& p) {
  auto& cat = c.cat();
  catalog::Transaction tx(cat);
  OrdersReply r;
  for (const auto& device : target_devices(cat, p.targets)) {
    accepted_device(cat, device);
    catalog::Order o;
    o.id = util::random_hex(8);
    o.device = device;
    o.spec = {{"type", OrderKind::snapshot}, {"reason", p.reason}};
    o.created_at = util::now_ns();
    cat.add_order(o);
    cat.add_event("order.created", device, {{"order_id", o.id}, {"spec", o.spec}, {"by", c.by()}});
    r.orders.push_back(o);
  }
  tx.commit();
  return r;
}

void to_json(json& j, const SnapshotForgotten& r) {
  j = {{"snapshot_id", r.snapshot_id}, {"device_id", r.device_id}, {"pinned", r.pinned}, {"forgotten", true}};
}

SnapshotForgotten snapshot_forget(Context& c, const SnapshotForget& p) {
  auto& cat = c.cat();
  catalog::Transaction tx(cat);
  auto s = cat.snapshot(p.snapshot_id);
  if (!s) throw Error(ErrorKind::not_found, "snapshot " + printable(p.snapshot_id, 100) + ": not found");
  if (auto capture = cat.capture(s->device); capture && *capture == s->id)
    throw Error(ErrorKind::precondition, "snapshot " + s->id + " is where the app capture on device " + s->device +
                                             " started; finish the capture first");
  if (s->pinned && !p.force)
    throw Error(ErrorKind::precondition, "snapshot " + s->id + " is pinned; --force forgets it anyway");
  cat.delete_snapshot(s->id);
  c.device = s->device;
  cat.add_event("snapshot.forgotten", s->device, {{"snapshot_id", s->id}, {"pinned", s->pinned}, {"by", c.by()}});
  tx.commit();
  return {s->id, s->device, s->pinned};
}

}  // namespace mirage::server
