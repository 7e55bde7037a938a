#include "libmirage/catalog/catalog.hpp"

#include <filesystem>

#include "libmirage/util/clock.hpp"
#include "libmirage/util/error.hpp"

namespace mirage::catalog {

namespace {

// 3: pack ids are never given twice (AUTOINCREMENT). A writer holds its pack's id
// while GC may retire and delete that pack; a reused id would let it index records
// under another process's pack.
constexpr int k_schema_version = 4;

#define MIRAGE_PACKS_COLUMNS                                                                              \
  "(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE NOT NULL, volume INTEGER NOT NULL REFERENCES " \
  "volumes(id), size INTEGER NOT NULL DEFAULT 0, sealed INTEGER NOT NULL DEFAULT 0, "                    \
  "written_at INTEGER NOT NULL DEFAULT 0, retired_at INTEGER NOT NULL DEFAULT 0)"

constexpr const char* k_schema = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices(
  id TEXT PRIMARY KEY, state TEXT NOT NULL, reference INTEGER NOT NULL DEFAULT 0,
  hostname TEXT NOT NULL DEFAULT '', policy TEXT NOT NULL DEFAULT 'default',
  inventory TEXT NOT NULL DEFAULT '{}', registered_at INTEGER NOT NULL, last_seen INTEGER NOT NULL,
  volume INTEGER NOT NULL DEFAULT 0, tags TEXT NOT NULL DEFAULT '[]');
CREATE TABLE IF NOT EXISTS snapshots(
  id TEXT PRIMARY KEY, device TEXT NOT NULL REFERENCES devices(id), tree BLOB NOT NULL,
  root BLOB NOT NULL, created_at INTEGER NOT NULL, stats TEXT NOT NULL DEFAULT '{}',
  pinned INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS snapshots_by_device ON snapshots(device, created_at);
CREATE TABLE IF NOT EXISTS volumes(id INTEGER PRIMARY KEY, path TEXT NOT NULL, read_only INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS packs)sql" MIRAGE_PACKS_COLUMNS R"sql(;
CREATE TABLE IF NOT EXISTS chunks(
  id BLOB PRIMARY KEY, pack INTEGER NOT NULL, offset INTEGER NOT NULL, stored INTEGER NOT NULL,
  raw INTEGER NOT NULL, codec INTEGER NOT NULL, added_at INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chunks_by_pack ON chunks(pack, offset);
CREATE TABLE IF NOT EXISTS uploads(
  source TEXT PRIMARY KEY, started_at INTEGER NOT NULL, touched_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS collections(
  name TEXT PRIMARY KEY, kind TEXT NOT NULL, spec TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tokens(
  hash TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, created_at INTEGER NOT NULL,
  revoked INTEGER NOT NULL DEFAULT 0, expires_at INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS policies(name TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events(
  id INTEGER PRIMARY KEY, at INTEGER NOT NULL, type TEXT NOT NULL, device TEXT NOT NULL DEFAULT '',
  detail TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS layers(
  name TEXT NOT NULL, version INTEGER NOT NULL, kind TEXT NOT NULL, tree BLOB NOT NULL,
  manifest TEXT NOT NULL, created_at INTEGER NOT NULL, PRIMARY KEY(name, version));
CREATE TABLE IF NOT EXISTS orders(
  id TEXT PRIMARY KEY, device TEXT NOT NULL, spec TEXT NOT NULL, state TEXT NOT NULL,
  created_at INTEGER NOT NULL, finished_at INTEGER NOT NULL DEFAULT 0, result TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS orders_by_device ON orders(device, created_at);
CREATE TABLE IF NOT EXISTS assignments(device TEXT PRIMARY KEY, given TEXT NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS captures(device TEXT PRIMARY KEY, snapshot TEXT NOT NULL, started_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS device_credentials(device TEXT PRIMARY KEY, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cvds(
  device TEXT NOT NULL, number INTEGER NOT NULL, started_at INTEGER NOT NULL, reason TEXT NOT NULL,
  PRIMARY KEY(device, number));
)sql";

/// A JSON column; {} when it does not parse (a damaged row is shown empty, not fatal).
nlohmann::json parse_json_col(const std::string& text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  return j.is_discarded() ? nlohmann::json::object() : j;
}

Device device_from(util::Stmt& s) {
  Device d;
  d.id = s.text(0);
  d.state = state_from_name(s.text(1));
  d.reference = s.int64(2) != 0;
  d.hostname = s.text(3);
  d.policy = s.text(4);
  d.inventory = parse_json_col(s.text(5));
  d.registered_at = s.int64(6);
  d.last_seen = s.int64(7);
  auto tags = parse_json_col(s.text(8));
  if (tags.is_array())
    for (const auto& t : tags)
      if (t.is_string()) d.tags.push_back(t.get<std::string>());
  d.volume = s.int64(9);
  return d;
}

Snapshot snapshot_from(util::Stmt& s) {
  Snapshot snap;
  snap.id = s.text(0);
  snap.device = s.text(1);
  auto tree = s.blob(2);
  if (tree.size() != 32) throw Error(ErrorKind::integrity, "catalog: snapshot " + snap.id + " has a malformed tree id");
  snap.tree = Digest::from_span(tree);
  snap.root = s.blob(3);
  snap.created_at = s.int64(4);
  snap.stats = parse_json_col(s.text(5));
  snap.pinned = s.int64(6) != 0;
  return snap;
}

constexpr const char* k_device_cols =
    "id, state, reference, hostname, policy, inventory, registered_at, last_seen, tags, volume";
constexpr const char* k_snapshot_cols = "id, device, tree, root, created_at, stats, pinned";

std::string checked_path(const std::string& path, bool create) {
  if (!create && !std::filesystem::exists(path))
    throw Error(ErrorKind::not_found, "catalog " + path + ": not found (run 'mirage-serverd init')");
  return path;
}

}  // namespace

std::string_view state_name(DeviceState s) {
  switch (s) {
    case DeviceState::pending: return "pending";
    case DeviceState::accepted: return "accepted";
    case DeviceState::rejected: return "rejected";
  }
  return "pending";
}

DeviceState state_from_name(std::string_view name) {
  if (name == "accepted") return DeviceState::accepted;
  if (name == "rejected") return DeviceState::rejected;
  return DeviceState::pending;
}

void to_json(nlohmann::json& j, const Device& d) {
  j = {{"device_id", d.id},
       {"state", state_name(d.state)},
       {"reference", d.reference},
       {"hostname", d.hostname},
       {"policy", d.policy},
       {"inventory", d.inventory},
       {"registered_at", util::rfc3339(d.registered_at)},
       {"last_seen", util::rfc3339(d.last_seen)},
       {"tags", d.tags},
       {"volume", d.volume}};
}

void to_json(nlohmann::json& j, const Snapshot& s) {
  j = {{"snapshot_id", s.id},     {"device_id", s.device}, {"tree", s.tree.hex()},
       {"time", util::rfc3339(s.created_at)}, {"time_ns", s.created_at}, {"stats", s.stats},
       {"pinned", s.pinned}};
}

Catalog::Catalog(const std::string& path, bool create, util::Db::Access access)
    : m_db(checked_path(path, create), access) {
  if (access == util::Db::Access::read_only) {
    auto version = util::Stmt(m_db, "SELECT value FROM meta WHERE key = 'schema'");
    if (!version.step() || version.text(0) != std::to_string(k_schema_version))
      throw Error(ErrorKind::precondition, "catalog " + path + " on a read-only filesystem has another schema version; "
                                           "open it writable once to upgrade it");
    m_find_chunk = std::make_unique<util::Stmt>(m_db, "SELECT pack, offset, stored, raw, codec FROM chunks WHERE id = ?");
    return;
  }
  // Several server processes may open a new catalog at once. Each autocommit CREATE
  // would start as a reader and upgrade, which WAL refuses at once (SQLITE_BUSY, no busy
  // wait) when another process wrote meanwhile; one IMMEDIATE transaction takes the
  // write lock up front and waits for it.
  util::Transaction tx(m_db);
  m_db.exec(k_schema);
  std::optional<std::string> version;
  {
    util::Stmt get(m_db, "SELECT value FROM meta WHERE key = 'schema'");
    if (get.step()) version = get.text(0);
  }
  if (version == "2") {
    // 2 -> 3: the packs table again with AUTOINCREMENT (its ids carry over; the
    // sequence starts above the highest).
    m_db.exec("CREATE TABLE packs_v3" MIRAGE_PACKS_COLUMNS
              "; INSERT INTO packs_v3(id, name, volume, size, sealed, written_at, retired_at) "
              "SELECT id, name, volume, size, sealed, written_at, retired_at FROM packs; "
              "DROP TABLE packs; ALTER TABLE packs_v3 RENAME TO packs; "
              "UPDATE meta SET value = '3' WHERE key = 'schema';");
    version = "3";
  }
  if (version == "3") {
    // 3 -> 4: tokens may expire (0: never).
    if (util::Stmt(m_db, "SELECT count(*) FROM pragma_table_info('tokens') WHERE name = 'expires_at'").scalar() == 0)
      m_db.exec("ALTER TABLE tokens ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 0");
    m_db.exec("UPDATE meta SET value = '4' WHERE key = 'schema'");
    version = "4";
  }
  if (!version)
    util::Stmt(m_db, "INSERT INTO meta(key, value) VALUES ('schema', ?)").bind(1, std::to_string(k_schema_version)).run();
  else if (*version != std::to_string(k_schema_version))
    throw Error(ErrorKind::precondition, "catalog " + path + ": schema version " + *version + " is not supported");
  tx.commit();
  m_find_chunk = std::make_unique<util::Stmt>(m_db, "SELECT pack, offset, stored, raw, codec FROM chunks WHERE id = ?");
}

std::optional<Device> Catalog::device(const std::string& id) {
  util::Stmt s(m_db, std::string("SELECT ") + k_device_cols + " FROM devices WHERE id = ?");
  s.bind(1, id);
  if (!s.step()) return std::nullopt;
  return device_from(s);
}

std::vector<Device> Catalog::devices(std::optional<DeviceState> state) {
  util::Stmt s(m_db, std::string("SELECT ") + k_device_cols + " FROM devices" + (state ? " WHERE state = ?" : "") +
                         " ORDER BY registered_at, id");
  if (state) s.bind(1, std::string(state_name(*state)));
  std::vector<Device> out;
  while (s.step()) out.push_back(device_from(s));
  return out;
}

void Catalog::add_device(const Device& d) {
  util::Stmt(m_db, "INSERT INTO devices(id, state, reference, hostname, policy, inventory, registered_at, last_seen) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
      .bind(1, d.id)
      .bind(2, std::string(state_name(d.state)))
      .bind(3, int64_t(d.reference))
      .bind(4, d.hostname)
      .bind(5, d.policy)
      .bind(6, d.inventory.dump())
      .bind(7, d.registered_at)
      .bind(8, d.last_seen)
      .run();
}

void Catalog::set_device_state(const std::string& id, DeviceState state, bool reference) {
  util::Stmt(m_db, "UPDATE devices SET state = ?, reference = ? WHERE id = ?")
      .bind(1, std::string(state_name(state)))
      .bind(2, int64_t(reference))
      .bind(3, id)
      .run();
}

void Catalog::set_device_policy(const std::string& id, const std::string& policy) {
  util::Stmt(m_db, "UPDATE devices SET policy = ? WHERE id = ?").bind(1, policy).bind(2, id).run();
}

void Catalog::touch_device(const std::string& id, const std::string& hostname, const nlohmann::json& inventory) {
  util::Stmt(m_db, "UPDATE devices SET hostname = ?, inventory = ?, last_seen = ? WHERE id = ?")
      .bind(1, hostname)
      .bind(2, inventory.dump())
      .bind(3, util::now_ns())
      .bind(4, id)
      .run();
}

void Catalog::add_snapshot(const Snapshot& s) {
  util::Stmt(m_db, "INSERT INTO snapshots(id, device, tree, root, created_at, stats, pinned) VALUES (?, ?, ?, ?, ?, ?, ?)")
      .bind(1, s.id)
      .bind(2, s.device)
      .bind_blob(3, s.tree.bytes)
      .bind_blob(4, s.root)
      .bind(5, s.created_at)
      .bind(6, s.stats.dump())
      .bind(7, int64_t(s.pinned))
      .run();
}

std::vector<Snapshot> Catalog::snapshots(const std::string& device) {
  util::Stmt s(m_db, std::string("SELECT ") + k_snapshot_cols + " FROM snapshots WHERE device = ? ORDER BY created_at, id");
  s.bind(1, device);
  std::vector<Snapshot> out;
  while (s.step()) out.push_back(snapshot_from(s));
  return out;
}

std::vector<Snapshot> Catalog::all_snapshots() {
  util::Stmt s(m_db, std::string("SELECT ") + k_snapshot_cols + " FROM snapshots ORDER BY created_at, id");
  std::vector<Snapshot> out;
  while (s.step()) out.push_back(snapshot_from(s));
  return out;
}

void Catalog::delete_snapshot(const std::string& id) {
  util::Stmt(m_db, "DELETE FROM snapshots WHERE id = ?").bind(1, id).run();
}

std::vector<Volume> Catalog::volumes() {
  util::Stmt s(m_db, "SELECT id, path, read_only FROM volumes ORDER BY id");
  std::vector<Volume> out;
  while (s.step()) out.push_back({s.int64(0), s.text(1), s.int64(2) != 0});
  return out;
}

int64_t Catalog::add_volume(const std::string& path) {
  util::Stmt(m_db, "INSERT INTO volumes(path) VALUES (?)").bind(1, path).run();
  return m_db.last_insert_rowid();
}

void Catalog::set_volume_read_only(int64_t id, bool read_only) {
  util::Stmt(m_db, "UPDATE volumes SET read_only = ? WHERE id = ?").bind(1, int64_t(read_only)).bind(2, id).run();
}

int64_t Catalog::add_pack(const std::string& name, int64_t volume) {
  util::Stmt(m_db, "INSERT INTO packs(name, volume, written_at) VALUES (?, ?, ?)")
      .bind(1, name)
      .bind(2, volume)
      .bind(3, util::now_ns())
      .run();
  return m_db.last_insert_rowid();
}

std::vector<Pack> Catalog::packs() {
  util::Stmt s(m_db, "SELECT id, name, volume, size FROM packs ORDER BY id");
  std::vector<Pack> out;
  while (s.step()) out.push_back({s.int64(0), s.text(1), s.int64(2), static_cast<uint64_t>(s.int64(3))});
  return out;
}

std::optional<Pack> Catalog::pack(int64_t id) {
  util::Stmt s(m_db, "SELECT id, name, volume, size FROM packs WHERE id = ?");
  s.bind(1, id);
  if (!s.step()) return std::nullopt;
  return Pack{s.int64(0), s.text(1), s.int64(2), static_cast<uint64_t>(s.int64(3))};
}

void Catalog::seal_pack(int64_t id) {
  util::Stmt(m_db, "UPDATE packs SET sealed = 1 WHERE id = ?").bind(1, id).run();
}

std::optional<ChunkLocation> Catalog::find_chunk(const Digest& id) {
  auto& q = *m_find_chunk;
  q.reset();
  q.bind_blob(1, id.bytes);
  if (!q.step()) {
    q.reset();
    return std::nullopt;
  }
  ChunkLocation loc{q.int64(0), static_cast<uint64_t>(q.int64(1)), static_cast<uint32_t>(q.int64(2)),
                    static_cast<uint32_t>(q.int64(3)), static_cast<uint8_t>(q.int64(4))};
  q.reset();
  return loc;
}

bool Catalog::add_chunks(std::span<const std::pair<Digest, ChunkLocation>> chunks, int64_t pack, uint64_t pack_size) {
  util::Transaction tx(m_db);
  util::Stmt ins(m_db,
                 "INSERT OR IGNORE INTO chunks(id, pack, offset, stored, raw, codec, added_at) VALUES (?, ?, ?, ?, ?, ?, ?)");
  int64_t now = util::now_ns();
  for (const auto& [id, loc] : chunks) {
    ins.bind_blob(1, id.bytes)
        .bind(2, loc.pack)
        .bind(3, static_cast<int64_t>(loc.offset))
        .bind(4, int64_t(loc.stored))
        .bind(5, int64_t(loc.raw))
        .bind(6, int64_t(loc.codec))
        .bind(7, now);
    ins.run();
  }
  // A pack that GC retired meanwhile (it took this writer for gone) must not gain
  // records: the caller writes them again into a new pack.
  util::Stmt upd(m_db, "UPDATE packs SET size = ?, written_at = ? WHERE id = ? AND retired_at = 0");
  upd.bind(1, static_cast<int64_t>(pack_size)).bind(2, now).bind(3, pack).run();
  if (m_db.changes() == 0) return false;  // rolls back
  tx.commit();
  return true;
}

void Catalog::for_each_chunk(const std::function<void(const Digest&, const ChunkLocation&)>& fn) {
  util::Stmt s(m_db, "SELECT id, pack, offset, stored, raw, codec FROM chunks ORDER BY pack, offset");
  while (s.step()) {
    auto id = s.blob(0);
    if (id.size() != 32) throw Error(ErrorKind::integrity, "catalog: malformed chunk id in index");
    fn(Digest::from_span(id), {s.int64(1), static_cast<uint64_t>(s.int64(2)), static_cast<uint32_t>(s.int64(3)),
                               static_cast<uint32_t>(s.int64(4)), static_cast<uint8_t>(s.int64(5))});
  }
}

uint64_t Catalog::chunk_count() {
  return static_cast<uint64_t>(util::Stmt(m_db, "SELECT count(*) FROM chunks").scalar());
}

void Catalog::add_token(const std::string& hash, const std::string& name, const std::string& role, int64_t expires_at) {
  util::Stmt(m_db, "INSERT INTO tokens(hash, name, role, created_at, expires_at) VALUES (?, ?, ?, ?, ?)")
      .bind(1, hash)
      .bind(2, name)
      .bind(3, role)
      .bind(4, util::now_ns())
      .bind(5, expires_at)
      .run();
}

namespace {
constexpr const char* k_live_token = "revoked = 0 AND (expires_at = 0 OR expires_at > ?)";
}  // namespace

std::optional<std::pair<std::string, std::string>> Catalog::token_role(const std::string& hash) {
  util::Stmt s(m_db, std::string("SELECT role, name FROM tokens WHERE hash = ? AND ") + k_live_token);
  s.bind(1, hash).bind(2, util::now_ns());
  if (!s.step()) return std::nullopt;
  return std::make_pair(s.text(0), s.text(1));
}

std::vector<nlohmann::json> Catalog::tokens() {
  util::Stmt s(m_db, "SELECT name, role, created_at, revoked, expires_at FROM tokens ORDER BY created_at, name");
  std::vector<nlohmann::json> out;
  int64_t now = util::now_ns();
  while (s.step()) {
    nlohmann::json t = {{"name", s.text(0)}, {"role", s.text(1)}, {"created", util::rfc3339(s.int64(2))},
                        {"revoked", s.int64(3) != 0}, {"expires", nullptr}, {"expired", false}};
    if (s.int64(4) != 0) {
      t["expires"] = util::rfc3339(s.int64(4));
      t["expired"] = s.int64(4) <= now;
    }
    out.push_back(t);
  }
  return out;
}

std::optional<std::string> Catalog::live_token_role(const std::string& name) {
  util::Stmt s(m_db, std::string("SELECT role FROM tokens WHERE name = ? AND ") + k_live_token);
  s.bind(1, name).bind(2, util::now_ns());
  if (!s.step()) return std::nullopt;
  return s.text(0);
}

bool Catalog::token_name_taken(const std::string& name) {
  util::Stmt s(m_db, "SELECT 1 FROM tokens WHERE name = ? AND revoked = 0");
  s.bind(1, name);
  return s.step();
}

int64_t Catalog::live_admin_tokens() {
  return util::Stmt(m_db, std::string("SELECT count(*) FROM tokens WHERE role = 'admin' AND ") + k_live_token)
      .bind(1, util::now_ns())
      .scalar();
}

int Catalog::revoke_token(const std::string& name) {
  util::Stmt(m_db, "UPDATE tokens SET revoked = 1 WHERE name = ? AND revoked = 0").bind(1, name).run();
  return m_db.changes();
}

int64_t Catalog::device_count(DeviceState state) {
  return util::Stmt(m_db, "SELECT count(*) FROM devices WHERE state = ?").bind(1, std::string(state_name(state))).scalar();
}

void Catalog::delete_device(const std::string& id) {
  for (const char* table : {"snapshots", "orders", "assignments", "captures", "device_credentials", "cvds"})
    util::Stmt(m_db, std::string("DELETE FROM ") + table + " WHERE device = ?").bind(1, id).run();
  util::Stmt(m_db, "DELETE FROM uploads WHERE source = ?").bind(1, id).run();
  util::Stmt(m_db, "DELETE FROM devices WHERE id = ?").bind(1, id).run();
}

std::optional<nlohmann::json> Catalog::policy(const std::string& name) {
  util::Stmt s(m_db, "SELECT doc FROM policies WHERE name = ?");
  s.bind(1, name);
  if (!s.step()) return std::nullopt;
  return nlohmann::json::parse(s.text(0));
}

void Catalog::set_policy(const std::string& name, const nlohmann::json& doc) {
  util::Stmt(m_db, "INSERT INTO policies(name, doc) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET doc = excluded.doc")
      .bind(1, name)
      .bind(2, doc.dump())
      .run();
}

std::vector<std::string> Catalog::policies() {
  util::Stmt s(m_db, "SELECT name FROM policies ORDER BY name");
  std::vector<std::string> out;
  while (s.step()) out.push_back(s.text(0));
  return out;
}

void Catalog::set_device_tags(const std::string& id, const std::vector<std::string>& tags) {
  util::Stmt(m_db, "UPDATE devices SET tags = ? WHERE id = ?").bind(1, nlohmann::json(tags).dump()).bind(2, id).run();
}

void Catalog::set_device_volume(const std::string& id, int64_t volume) {
  util::Stmt(m_db, "UPDATE devices SET volume = ? WHERE id = ?").bind(1, volume).bind(2, id).run();
}

void Catalog::touch_upload(const std::string& source) {
  int64_t now = util::now_ns();
  util::Stmt(m_db,
             "INSERT INTO uploads(source, started_at, touched_at) VALUES (?, ?, ?) "
             "ON CONFLICT(source) DO UPDATE SET touched_at = excluded.touched_at")
      .bind(1, source)
      .bind(2, now)
      .bind(3, now)
      .run();
}

void Catalog::end_upload(const std::string& source) {
  util::Stmt(m_db, "DELETE FROM uploads WHERE source = ?").bind(1, source).run();
}

void Catalog::set_collection(const std::string& name, const std::string& kind, const nlohmann::json& spec) {
  util::Stmt(m_db,
             "INSERT INTO collections(name, kind, spec, created_at) VALUES (?, ?, ?, ?) "
             "ON CONFLICT(name) DO UPDATE SET kind = excluded.kind, spec = excluded.spec")
      .bind(1, name)
      .bind(2, kind)
      .bind(3, spec.dump())
      .bind(4, util::now_ns())
      .run();
}

std::optional<std::pair<std::string, nlohmann::json>> Catalog::collection(const std::string& name) {
  util::Stmt s(m_db, "SELECT kind, spec FROM collections WHERE name = ?");
  s.bind(1, name);
  if (!s.step()) return std::nullopt;
  return std::make_pair(s.text(0), parse_json_col(s.text(1)));
}

std::vector<std::string> Catalog::collections() {
  util::Stmt s(m_db, "SELECT name FROM collections ORDER BY name");
  std::vector<std::string> out;
  while (s.step()) out.push_back(s.text(0));
  return out;
}

bool Catalog::delete_collection(const std::string& name) {
  util::Stmt(m_db, "DELETE FROM collections WHERE name = ?").bind(1, name).run();
  return m_db.changes() > 0;
}

void Catalog::add_event(const std::string& type, const std::string& device, const nlohmann::json& detail) {
  util::Stmt(m_db, "INSERT INTO events(at, type, device, detail) VALUES (?, ?, ?, ?)")
      .bind(1, util::now_ns())
      .bind(2, type)
      .bind(3, device)
      .bind(4, detail.dump())
      .run();
}


namespace {

LayerRow layer_from(util::Stmt& s) {
  LayerRow l;
  l.name = s.text(0);
  l.version = static_cast<uint32_t>(s.int64(1));
  l.kind = s.text(2);
  auto tree = s.blob(3);
  if (tree.size() != 32) throw Error(ErrorKind::integrity, "catalog: layer " + l.name + " has a malformed tree id");
  l.tree = Digest::from_span(tree);
  l.manifest = parse_json_col(s.text(4));
  l.created_at = s.int64(5);
  return l;
}

Order order_from(util::Stmt& s) {
  Order o;
  o.id = s.text(0);
  o.device = s.text(1);
  o.spec = parse_json_col(s.text(2));
  o.state = s.text(3);
  o.created_at = s.int64(4);
  o.finished_at = s.int64(5);
  o.result = parse_json_col(s.text(6));
  return o;
}

constexpr const char* k_layer_cols = "name, version, kind, tree, manifest, created_at";
constexpr const char* k_order_cols = "id, device, spec, state, created_at, finished_at, result";

}  // namespace

void to_json(nlohmann::json& j, const LayerRow& l) {
  j = {{"name", l.name}, {"version", l.version}, {"ref", l.name + "@" + std::to_string(l.version)}, {"kind", l.kind},
       {"tree", l.tree.hex()}, {"created", util::rfc3339(l.created_at)}};
}

void to_json(nlohmann::json& j, const Order& o) {
  j = {{"order_id", o.id}, {"device_id", o.device}, {"spec", o.spec}, {"state", o.state},
       {"created", util::rfc3339(o.created_at)}};
  if (o.finished_at) j["finished"] = util::rfc3339(o.finished_at);
  if (!o.result.empty()) j["result"] = o.result;
}

uint32_t Catalog::add_layer(const std::string& name, const std::string& kind, const Digest& tree,
                            const nlohmann::json& manifest) {
  util::Stmt max(m_db, "SELECT coalesce(max(version), 0) FROM layers WHERE name = ?");
  auto version = static_cast<uint32_t>(max.bind(1, name).scalar() + 1);
  util::Stmt(m_db, "INSERT INTO layers(name, version, kind, tree, manifest, created_at) VALUES (?, ?, ?, ?, ?, ?)")
      .bind(1, name)
      .bind(2, int64_t(version))
      .bind(3, kind)
      .bind_blob(4, tree.bytes)
      .bind(5, manifest.dump())
      .bind(6, util::now_ns())
      .run();
  return version;
}

std::vector<LayerRow> Catalog::layers(const std::string& name) {
  util::Stmt s(m_db, std::string("SELECT ") + k_layer_cols + " FROM layers" + (name.empty() ? "" : " WHERE name = ?") +
                         " ORDER BY name, version");
  if (!name.empty()) s.bind(1, name);
  std::vector<LayerRow> out;
  while (s.step()) out.push_back(layer_from(s));
  return out;
}

std::optional<LayerRow> Catalog::layer(const std::string& name, uint32_t version) {
  util::Stmt s(m_db, std::string("SELECT ") + k_layer_cols + " FROM layers WHERE name = ?" +
                         (version ? " AND version = ?" : " ORDER BY version DESC LIMIT 1"));
  s.bind(1, name);
  if (version) s.bind(2, int64_t(version));
  if (!s.step()) return std::nullopt;
  return layer_from(s);
}

void Catalog::add_order(const Order& o) {
  util::Stmt(m_db, "INSERT INTO orders(id, device, spec, state, created_at) VALUES (?, ?, ?, ?, ?)")
      .bind(1, o.id)
      .bind(2, o.device)
      .bind(3, o.spec.dump())
      .bind(4, o.state)
      .bind(5, o.created_at)
      .run();
}

std::vector<Order> Catalog::orders(const std::string& device, const std::string& state) {
  util::Stmt s(m_db, std::string("SELECT ") + k_order_cols + " FROM orders WHERE device = ?" +
                         (state.empty() ? "" : " AND state = ?") + " ORDER BY created_at, rowid");
  s.bind(1, device);
  if (!state.empty()) s.bind(2, state);
  std::vector<Order> out;
  while (s.step()) out.push_back(order_from(s));
  return out;
}

std::optional<Order> Catalog::order(const std::string& id) {
  util::Stmt s(m_db, std::string("SELECT ") + k_order_cols + " FROM orders WHERE id = ?");
  s.bind(1, id);
  if (!s.step()) return std::nullopt;
  return order_from(s);
}

void Catalog::finish_order(const std::string& id, const std::string& state, const nlohmann::json& result) {
  util::Stmt(m_db, "UPDATE orders SET state = ?, finished_at = ?, result = ? WHERE id = ?")
      .bind(1, state)
      .bind(2, util::now_ns())
      .bind(3, result.dump())
      .bind(4, id)
      .run();
}

nlohmann::json Catalog::given(const std::string& device) {
  util::Stmt s(m_db, "SELECT given FROM assignments WHERE device = ?");
  s.bind(1, device);
  if (!s.step()) return nlohmann::json::object();
  return parse_json_col(s.text(0));
}

void Catalog::set_given(const std::string& device, const nlohmann::json& given) {
  util::Stmt(m_db, "INSERT INTO assignments(device, given, updated_at) VALUES (?, ?, ?) "
                   "ON CONFLICT(device) DO UPDATE SET given = excluded.given, updated_at = excluded.updated_at")
      .bind(1, device)
      .bind(2, given.dump())
      .bind(3, util::now_ns())
      .run();
}

void Catalog::set_capture(const std::string& device, const std::string& snapshot) {
  util::Stmt(m_db, "INSERT OR REPLACE INTO captures(device, snapshot, started_at) VALUES (?, ?, ?)")
      .bind(1, device)
      .bind(2, snapshot)
      .bind(3, util::now_ns())
      .run();
}

std::optional<std::string> Catalog::capture(const std::string& device) {
  util::Stmt s(m_db, "SELECT snapshot FROM captures WHERE device = ?");
  s.bind(1, device);
  if (!s.step()) return std::nullopt;
  return s.text(0);
}

std::optional<std::string> Catalog::device_credential(const std::string& device) {
  util::Stmt s(m_db, "SELECT hash FROM device_credentials WHERE device = ?");
  s.bind(1, device);
  if (!s.step()) return std::nullopt;
  return s.text(0);
}

void Catalog::set_device_credential(const std::string& device, const std::string& hash) {
  util::Stmt(m_db, "INSERT OR REPLACE INTO device_credentials(device, hash) VALUES (?, ?)").bind(1, device).bind(2, hash).run();
}

int64_t Catalog::start_cvd(const std::string& device, const std::string& reason) {
  auto list = cvds(device);
  int64_t number = list.empty() ? 2 : list.back().first + 1;
  util::Stmt(m_db, "INSERT INTO cvds(device, number, started_at, reason) VALUES (?, ?, ?, ?)")
      .bind(1, device)
      .bind(2, number)
      .bind(3, util::now_ns())
      .bind(4, reason)
      .run();
  return number;
}

std::vector<std::pair<int64_t, int64_t>> Catalog::cvds(const std::string& device) {
  util::Stmt s(m_db, "SELECT number, started_at FROM cvds WHERE device = ? ORDER BY number");
  s.bind(1, device);
  std::vector<std::pair<int64_t, int64_t>> out;
  while (s.step()) out.emplace_back(s.int64(0), s.int64(1));
  return out;
}

std::vector<nlohmann::json> Catalog::events(const std::string& device, int64_t since, int64_t after_id,
                                            const std::string& type) {
  // A type ending in '.' (or "audit") is a prefix: "order." is every order event.
  util::Stmt s(m_db, std::string("SELECT id, at, type, device, detail FROM events WHERE at >= ? AND id > ?") +
                         (device.empty() ? "" : " AND device = ?3") +
                         (type.empty() ? "" : " AND (type = ?4 OR substr(type, 1, length(?4) + 1) = ?4 || '.')") +
                         " ORDER BY id LIMIT 10000");
  s.bind(1, since);
  s.bind(2, after_id);
  if (!device.empty()) s.bind(3, device);
  if (!type.empty()) s.bind(4, type.back() == '.' ? type.substr(0, type.size() - 1) : type);
  std::vector<nlohmann::json> out;
  while (s.step())
    out.push_back({{"event_id", s.int64(0)}, {"time", util::rfc3339(s.int64(1))}, {"type", s.text(2)},
                   {"device_id", s.text(3)}, {"detail", parse_json_col(s.text(4))}});
  return out;
}

Transaction::Transaction(Catalog& catalog, Mode mode)
    : m_tx(std::make_unique<util::Transaction>(
          catalog.db(), mode == Mode::write ? util::Transaction::Mode::immediate : util::Transaction::Mode::deferred)) {}

Transaction::~Transaction() = default;

void Transaction::commit() { m_tx->commit(); }

}  // namespace mirage::catalog
