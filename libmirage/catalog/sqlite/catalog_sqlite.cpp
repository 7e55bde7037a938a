#include "libmirage/catalog/sqlite/catalog_sqlite.hpp"

#include <fcntl.h>
#include <sys/file.h>

#include <algorithm>
#include <filesystem>

#include "libmirage/util/clock.hpp"
#include "libmirage/util/error.hpp"
#include "libmirage/util/fd.hpp"
#include "libmirage/util/sqlite.hpp"

namespace mirage::catalog::sqlite {

namespace {

// 3: pack ids are never given twice (AUTOINCREMENT). A writer holds its pack's id
// while GC may retire and delete that pack; a reused id would let it index records
// under another process's pack.
// 5: devices have a name admins give them.
// 6: a snapshot records the layers its device had been given (a revert gives them back).
// 7: a device may be replaced by another (replaced_by), and an enrolled device's id
//    registered without its credential waits for re-enrolment (reenrolments).
// 8: the latest migration preflight report per device (migration_checks).
constexpr int k_schema_version = 8;
/// catalog.hpp, touch_upload: how old a touch is before the next one is written.
constexpr int64_t k_touch_granularity_ns = 1000000000;

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
  volume INTEGER NOT NULL DEFAULT 0, tags TEXT NOT NULL DEFAULT '[]', name TEXT NOT NULL DEFAULT '',
  replaced_by TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS snapshots(
  id TEXT PRIMARY KEY, device TEXT NOT NULL REFERENCES devices(id), tree BLOB NOT NULL,
  root BLOB NOT NULL, created_at INTEGER NOT NULL, stats TEXT NOT NULL DEFAULT '{}',
  pinned INTEGER NOT NULL DEFAULT 0, given TEXT NOT NULL DEFAULT '{}');
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
CREATE TABLE IF NOT EXISTS reenrolments(
  device TEXT PRIMARY KEY, hash TEXT NOT NULL, hostname TEXT NOT NULL DEFAULT '', inventory TEXT NOT NULL DEFAULT '{}',
  requested_at INTEGER NOT NULL, last_seen INTEGER NOT NULL, contested INTEGER NOT NULL DEFAULT 0,
  contender_hash TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS cvds(
  device TEXT NOT NULL, number INTEGER NOT NULL, started_at INTEGER NOT NULL, reason TEXT NOT NULL,
  PRIMARY KEY(device, number));
CREATE TABLE IF NOT EXISTS migration_checks(device TEXT PRIMARY KEY, report TEXT NOT NULL, checked_at INTEGER NOT NULL);
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
  d.name = s.text(10);
  d.replaced_by = s.text(11);
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
  snap.given = parse_json_col(s.text(7));
  return snap;
}

constexpr const char* k_device_cols =
    "id, state, reference, hostname, policy, inventory, registered_at, last_seen, tags, volume, name, replaced_by";
constexpr const char* k_snapshot_cols = "id, device, tree, root, created_at, stats, pinned, given";

std::string checked_path(const std::string& path, bool create) {
  if (!create && !std::filesystem::exists(path))
    throw Error(ErrorKind::not_found, "catalog " + path + ": not found (run 'mirage-serverd init')");
  return path;
}

/// The chunk index on the catalog's connection (its transactions cover it).
class SqliteChunkIndex final : public ChunkIndex {
 public:
  explicit SqliteChunkIndex(util::Db& db)
      : m_db(db),
        m_find_chunk(db, "SELECT pack, offset, stored, raw, codec FROM chunks WHERE id = ?"),
        m_add_chunk(db,
                    "INSERT OR IGNORE INTO chunks(id, pack, offset, stored, raw, codec, added_at) VALUES (?, ?, ?, ?, ?, ?, ?)"),
        m_set_pack_size(db, "UPDATE packs SET size = ?, written_at = ? WHERE id = ? AND retired_at = 0") {}
  std::optional<ChunkLocation> find_chunk(const Digest& id) override;
  bool add_chunks(std::span<const std::pair<Digest, ChunkLocation>> chunks, int64_t pack, uint64_t pack_size) override;
  void for_each_chunk(const std::function<void(const Digest&, const ChunkLocation&)>& fn) override;
  uint64_t chunk_count() override;
  void delete_chunks(std::span<const Digest> ids) override;
  std::vector<std::pair<Digest, ChunkLocation>> chunks_in_pack(int64_t pack) override;
  uint64_t pack_chunk_count(int64_t pack) override;
  bool move_chunk(const Digest& id, const ChunkLocation& from, int64_t pack, uint64_t offset) override;

 private:
  util::Db& m_db;
  util::Stmt m_find_chunk;  ///< prepared once: the hot lookup
  util::Stmt m_add_chunk, m_set_pack_size;  ///< prepared once: every upload's index write
};

/// GC's mark set: two temporary tables (on disk, per connection).
class SqliteMarkSet final : public MarkSet {
 public:
  explicit SqliteMarkSet(util::Db& db);
  bool add_tree(const Digest& id) override;
  void add_live(const Digest& id) override;
  bool contains(const Digest& id) override;
  void skip_snapshots(std::span<const std::string> ids) override;
  std::vector<Digest> new_roots() override;
  std::vector<SweepEntry> sweep_candidates(const std::optional<Digest>& after, size_t limit) override;

 private:
  util::Db& m_db;
  util::Stmt m_live, m_tree, m_contains;
};

/// The GC lock: a flock on DATA/gc.lock (released if the process dies).
class FlockLock final : public Lock {
 public:
  explicit FlockLock(const std::filesystem::path& file)
      : m_fd(::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600)) {
    // A store on a read-only file system, or not this user's: not permitted (4), as any
    // other write to it is.
    if (!m_fd) {
      ErrorKind kind = errno == EROFS || errno == EACCES || errno == EPERM ? ErrorKind::permission : ErrorKind::failed;
      throw_errno(kind, "open " + file.string());
    }
    if (::flock(m_fd.get(), LOCK_EX | LOCK_NB) != 0)
      throw Error(ErrorKind::precondition, "another GC is running on this data directory");
  }

 private:
  util::Fd m_fd;
};

class SqliteTransaction final : public BackendTransaction {
 public:
  SqliteTransaction(util::Db& db, Transaction::Mode mode)
      : m_tx(db, mode == Transaction::Mode::write ? util::Transaction::Mode::immediate
                                                  : util::Transaction::Mode::deferred) {}
  void commit() override { m_tx.commit(); }

 private:
  util::Transaction m_tx;
};

class SqliteCatalog final : public Catalog {
 public:
  SqliteCatalog(const std::string& path, bool create, util::Db::Access access);
  ChunkIndex& chunks() override;
  std::optional<Device> device(const std::string& id) override;
  std::vector<Device> devices(std::optional<DeviceState> state) override;
  void add_device(const Device& d) override;
  void set_device_state(const std::string& id, DeviceState state, bool reference) override;
  void set_device_policy(const std::string& id, const std::string& policy) override;
  void touch_device(const std::string& id, const std::string& hostname, const nlohmann::json& inventory) override;
  void set_device_tags(const std::string& id, const std::vector<std::string>& tags) override;
  void set_device_volume(const std::string& id, int64_t volume) override;
  int64_t device_count(DeviceState state) override;
  void set_device_name(const std::string& id, const std::string& name) override;
  std::map<std::string, DeviceActivity> device_activity() override;
  std::vector<int64_t> last_syncs(DeviceState state) override;
  void delete_device(const std::string& id) override;
  void set_device_replaced(const std::string& id, const std::string& by) override;
  void move_cvd(const std::string& from, const std::string& to) override;
  std::optional<Reenrolment> reenrolment(const std::string& device) override;
  std::vector<Reenrolment> reenrolments() override;
  void set_reenrolment(const Reenrolment& r) override;
  void delete_reenrolment(const std::string& device) override;
  void add_snapshot(const Snapshot& s) override;
  std::vector<Snapshot> snapshots(const std::string& device) override;
  std::vector<Snapshot> all_snapshots() override;
  void delete_snapshot(const std::string& id) override;
  std::optional<Snapshot> snapshot(const std::string& id) override;
  std::vector<Volume> volumes() override;
  int64_t add_volume(const std::string& path) override;
  void set_volume_read_only(int64_t id, bool read_only) override;
  int64_t add_pack(const std::string& name, int64_t volume) override;
  std::vector<Pack> packs() override;
  std::optional<Pack> pack(int64_t id) override;
  void seal_pack(int64_t id) override;
  void set_pack_size(int64_t id, uint64_t size, int64_t written_at) override;
  bool retire_pack(int64_t id, uint64_t size, int64_t at) override;
  void delete_pack(int64_t id) override;
  void add_token(const std::string& hash, const std::string& name, const std::string& role, int64_t expires_at) override;
  std::optional<std::pair<std::string, std::string>> token_role(const std::string& hash) override;
  std::vector<nlohmann::json> tokens() override;
  std::optional<std::string> live_token_role(const std::string& name) override;
  bool token_name_taken(const std::string& name) override;
  int64_t live_admin_tokens() override;
  int64_t token_count(const std::string& role) override;
  int revoke_token(const std::string& name) override;
  std::optional<nlohmann::json> policy(const std::string& name) override;
  void set_policy(const std::string& name, const nlohmann::json& doc) override;
  std::vector<std::string> policies() override;
  void touch_upload(const std::string& source) override;
  void end_upload(const std::string& source) override;
  UploadsInFlight uploads_in_flight(int64_t touched_since) override;
  void set_collection(const std::string& name, const std::string& kind, const nlohmann::json& spec) override;
  std::optional<std::pair<std::string, nlohmann::json>> collection(const std::string& name) override;
  std::vector<std::string> collections() override;
  bool delete_collection(const std::string& name) override;
  void add_event(const std::string& type, const std::string& device, const nlohmann::json& detail) override;
  std::vector<nlohmann::json> events(const std::string& device, int64_t since, int64_t after_id, const std::string& type) override;
  uint32_t add_layer(const std::string& name, const std::string& kind, const Digest& tree, const nlohmann::json& manifest) override;
  std::vector<LayerRow> layers(const std::string& name) override;
  std::optional<LayerRow> layer(const std::string& name, uint32_t version) override;
  void delete_layer(const std::string& name, uint32_t version) override;
  void add_order(const Order& o) override;
  std::vector<Order> orders(const std::string& device, const std::string& state) override;
  std::optional<Order> order(const std::string& id) override;
  void finish_order(const std::string& id, const std::string& state, const nlohmann::json& result) override;
  nlohmann::json given(const std::string& device) override;
  void set_given(const std::string& device, const nlohmann::json& given) override;
  std::optional<std::string> device_credential(const std::string& device) override;
  void set_device_credential(const std::string& device, const std::string& hash) override;
  int64_t start_cvd(const std::string& device, const std::string& reason) override;
  std::vector<std::pair<int64_t, int64_t>> cvds(const std::string& device) override;
  void set_capture(const std::string& device, const std::string& snapshot) override;
  std::optional<std::pair<nlohmann::json, int64_t>> migration_check(const std::string& device) override;
  void set_migration_check(const std::string& device, const nlohmann::json& report) override;
  std::optional<std::string> capture(const std::string& device) override;
  Counts counts(int64_t uploads_since) override;
  std::unique_ptr<Lock> gc_lock() override;
  std::unique_ptr<MarkSet> begin_marks() override;
  std::vector<PackUsage> pack_usage() override;

 protected:
  std::unique_ptr<BackendTransaction> begin(Transaction::Mode mode) override {
    return std::make_unique<SqliteTransaction>(m_db, mode);
  }

 private:
  std::string m_path;
  util::Db m_db;
  std::unique_ptr<SqliteChunkIndex> m_chunks;  ///< made once the schema exists
};

}  // namespace

SqliteCatalog::SqliteCatalog(const std::string& path, bool create, util::Db::Access access)
    : m_path(path), m_db(checked_path(path, create), access) {
  if (access == util::Db::Access::read_only) {
    auto version = util::Stmt(m_db, "SELECT value FROM meta WHERE key = 'schema'");
    if (!version.step() || version.text(0) != std::to_string(k_schema_version))
      throw Error(ErrorKind::precondition, "catalog " + path + " on a read-only filesystem has another schema version; "
                                           "open it writable once to upgrade it");
    m_chunks = std::make_unique<SqliteChunkIndex>(m_db);
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
  if (version == "4") {
    // 4 -> 5: devices have a name (mirage device rename).
    if (util::Stmt(m_db, "SELECT count(*) FROM pragma_table_info('devices') WHERE name = 'name'").scalar() == 0)
      m_db.exec("ALTER TABLE devices ADD COLUMN name TEXT NOT NULL DEFAULT ''");
    m_db.exec("UPDATE meta SET value = '5' WHERE key = 'schema'");
    version = "5";
  }
  if (version == "5") {
    // 5 -> 6: snapshots record the layers given (older ones: {}, unknown).
    if (util::Stmt(m_db, "SELECT count(*) FROM pragma_table_info('snapshots') WHERE name = 'given'").scalar() == 0)
      m_db.exec("ALTER TABLE snapshots ADD COLUMN given TEXT NOT NULL DEFAULT '{}'");
    m_db.exec("UPDATE meta SET value = '6' WHERE key = 'schema'");
    version = "6";
  }
  if (version == "6") {
    // 6 -> 7: replaced devices (the reenrolments table is made by k_schema above).
    if (util::Stmt(m_db, "SELECT count(*) FROM pragma_table_info('devices') WHERE name = 'replaced_by'").scalar() == 0)
      m_db.exec("ALTER TABLE devices ADD COLUMN replaced_by TEXT NOT NULL DEFAULT ''");
    m_db.exec("UPDATE meta SET value = '7' WHERE key = 'schema'");
    version = "7";
  }
  if (version == "7") {
    // 7 -> 8: migration preflight reports (the table is made by k_schema above).
    m_db.exec("UPDATE meta SET value = '8' WHERE key = 'schema'");
    version = "8";
  }
  if (!version)
    util::Stmt(m_db, "INSERT INTO meta(key, value) VALUES ('schema', ?)").bind(1, std::to_string(k_schema_version)).run();
  else if (*version != std::to_string(k_schema_version))
    throw Error(ErrorKind::precondition, "catalog " + path + ": schema version " + *version + " is not supported");
  tx.commit();
  m_chunks = std::make_unique<SqliteChunkIndex>(m_db);
}

std::optional<Device> SqliteCatalog::device(const std::string& id) {
  util::Stmt s(m_db, std::string("SELECT ") + k_device_cols + " FROM devices WHERE id = ?");
  s.bind(1, id);
  if (!s.step()) return std::nullopt;
  return device_from(s);
}

std::vector<Device> SqliteCatalog::devices(std::optional<DeviceState> state) {
  util::Stmt s(m_db, std::string("SELECT ") + k_device_cols + " FROM devices" + (state ? " WHERE state = ?" : "") +
                         " ORDER BY registered_at, id");
  if (state) s.bind(1, std::string(state_name(*state)));
  std::vector<Device> out;
  while (s.step()) out.push_back(device_from(s));
  return out;
}

void SqliteCatalog::add_device(const Device& d) {
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

void SqliteCatalog::set_device_state(const std::string& id, DeviceState state, bool reference) {
  util::Stmt(m_db, "UPDATE devices SET state = ?, reference = ? WHERE id = ?")
      .bind(1, std::string(state_name(state)))
      .bind(2, int64_t(reference))
      .bind(3, id)
      .run();
}

void SqliteCatalog::set_device_policy(const std::string& id, const std::string& policy) {
  util::Stmt(m_db, "UPDATE devices SET policy = ? WHERE id = ?").bind(1, policy).bind(2, id).run();
}

void SqliteCatalog::touch_device(const std::string& id, const std::string& hostname, const nlohmann::json& inventory) {
  util::Stmt(m_db, "UPDATE devices SET hostname = ?, inventory = ?, last_seen = ? WHERE id = ?")
      .bind(1, hostname)
      .bind(2, inventory.dump())
      .bind(3, util::now_ns())
      .bind(4, id)
      .run();
}

void SqliteCatalog::add_snapshot(const Snapshot& s) {
  util::Stmt(m_db, "INSERT INTO snapshots(id, device, tree, root, created_at, stats, pinned, given) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
      .bind(1, s.id)
      .bind(2, s.device)
      .bind_blob(3, s.tree.bytes)
      .bind_blob(4, s.root)
      .bind(5, s.created_at)
      .bind(6, s.stats.dump())
      .bind(7, int64_t(s.pinned))
      .bind(8, s.given.dump())
      .run();
}

std::vector<Snapshot> SqliteCatalog::snapshots(const std::string& device) {
  util::Stmt s(m_db, std::string("SELECT ") + k_snapshot_cols + " FROM snapshots WHERE device = ? ORDER BY created_at, id");
  s.bind(1, device);
  std::vector<Snapshot> out;
  while (s.step()) out.push_back(snapshot_from(s));
  return out;
}

std::vector<Snapshot> SqliteCatalog::all_snapshots() {
  util::Stmt s(m_db, std::string("SELECT ") + k_snapshot_cols + " FROM snapshots ORDER BY created_at, id");
  std::vector<Snapshot> out;
  while (s.step()) out.push_back(snapshot_from(s));
  return out;
}

std::optional<Snapshot> SqliteCatalog::snapshot(const std::string& id) {
  util::Stmt s(m_db, std::string("SELECT ") + k_snapshot_cols + " FROM snapshots WHERE id = ?");
  s.bind(1, id);
  if (!s.step()) return std::nullopt;
  return snapshot_from(s);
}

void SqliteCatalog::delete_snapshot(const std::string& id) {
  util::Stmt(m_db, "DELETE FROM snapshots WHERE id = ?").bind(1, id).run();
}

std::vector<Volume> SqliteCatalog::volumes() {
  util::Stmt s(m_db, "SELECT id, path, read_only FROM volumes ORDER BY id");
  std::vector<Volume> out;
  while (s.step()) out.push_back({s.int64(0), s.text(1), s.int64(2) != 0});
  return out;
}

int64_t SqliteCatalog::add_volume(const std::string& path) {
  util::Stmt(m_db, "INSERT INTO volumes(path) VALUES (?)").bind(1, path).run();
  return m_db.last_insert_rowid();
}

void SqliteCatalog::set_volume_read_only(int64_t id, bool read_only) {
  util::Stmt(m_db, "UPDATE volumes SET read_only = ? WHERE id = ?").bind(1, int64_t(read_only)).bind(2, id).run();
}

int64_t SqliteCatalog::add_pack(const std::string& name, int64_t volume) {
  util::Stmt(m_db, "INSERT INTO packs(name, volume, written_at) VALUES (?, ?, ?)")
      .bind(1, name)
      .bind(2, volume)
      .bind(3, util::now_ns())
      .run();
  return m_db.last_insert_rowid();
}

std::vector<Pack> SqliteCatalog::packs() {
  util::Stmt s(m_db, "SELECT id, name, volume, size, retired_at FROM packs ORDER BY id");
  std::vector<Pack> out;
  while (s.step()) out.push_back({s.int64(0), s.text(1), s.int64(2), static_cast<uint64_t>(s.int64(3)), s.int64(4)});
  return out;
}

std::optional<Pack> SqliteCatalog::pack(int64_t id) {
  util::Stmt s(m_db, "SELECT id, name, volume, size, retired_at FROM packs WHERE id = ?");
  s.bind(1, id);
  if (!s.step()) return std::nullopt;
  return Pack{s.int64(0), s.text(1), s.int64(2), static_cast<uint64_t>(s.int64(3)), s.int64(4)};
}

void SqliteCatalog::seal_pack(int64_t id) {
  util::Stmt(m_db, "UPDATE packs SET sealed = 1 WHERE id = ?").bind(1, id).run();
}

std::optional<ChunkLocation> SqliteChunkIndex::find_chunk(const Digest& id) {
  auto& q = m_find_chunk;
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

bool SqliteChunkIndex::add_chunks(std::span<const std::pair<Digest, ChunkLocation>> chunks, int64_t pack, uint64_t pack_size) {
  // In id order: the b-tree's pages are each visited once, in order, not at random.
  std::vector<const std::pair<Digest, ChunkLocation>*> sorted;
  sorted.reserve(chunks.size());
  for (const auto& c : chunks) sorted.push_back(&c);
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->first < b->first; });
  util::Transaction tx(m_db);
  auto& ins = m_add_chunk;
  int64_t now = util::now_ns();
  for (const auto* chunk : sorted) {
    const auto& [id, loc] = *chunk;
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
  m_set_pack_size.bind(1, static_cast<int64_t>(pack_size)).bind(2, now).bind(3, pack).run();
  if (m_db.changes() == 0) return false;  // rolls back
  tx.commit();
  return true;
}

void SqliteChunkIndex::for_each_chunk(const std::function<void(const Digest&, const ChunkLocation&)>& fn) {
  util::Stmt s(m_db, "SELECT id, pack, offset, stored, raw, codec FROM chunks ORDER BY pack, offset");
  while (s.step()) {
    auto id = s.blob(0);
    if (id.size() != 32) throw Error(ErrorKind::integrity, "catalog: malformed chunk id in index");
    fn(Digest::from_span(id), {s.int64(1), static_cast<uint64_t>(s.int64(2)), static_cast<uint32_t>(s.int64(3)),
                               static_cast<uint32_t>(s.int64(4)), static_cast<uint8_t>(s.int64(5))});
  }
}

uint64_t SqliteChunkIndex::chunk_count() {
  return static_cast<uint64_t>(util::Stmt(m_db, "SELECT count(*) FROM chunks").scalar());
}

void SqliteCatalog::add_token(const std::string& hash, const std::string& name, const std::string& role, int64_t expires_at) {
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

std::optional<std::pair<std::string, std::string>> SqliteCatalog::token_role(const std::string& hash) {
  util::Stmt s(m_db, std::string("SELECT role, name FROM tokens WHERE hash = ? AND ") + k_live_token);
  s.bind(1, hash).bind(2, util::now_ns());
  if (!s.step()) return std::nullopt;
  return std::make_pair(s.text(0), s.text(1));
}

std::vector<nlohmann::json> SqliteCatalog::tokens() {
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

std::optional<std::string> SqliteCatalog::live_token_role(const std::string& name) {
  util::Stmt s(m_db, std::string("SELECT role FROM tokens WHERE name = ? AND ") + k_live_token);
  s.bind(1, name).bind(2, util::now_ns());
  if (!s.step()) return std::nullopt;
  return s.text(0);
}

bool SqliteCatalog::token_name_taken(const std::string& name) {
  util::Stmt s(m_db, "SELECT 1 FROM tokens WHERE name = ? AND revoked = 0");
  s.bind(1, name);
  return s.step();
}

int64_t SqliteCatalog::live_admin_tokens() {
  return util::Stmt(m_db, std::string("SELECT count(*) FROM tokens WHERE role = 'admin' AND ") + k_live_token)
      .bind(1, util::now_ns())
      .scalar();
}

int SqliteCatalog::revoke_token(const std::string& name) {
  util::Stmt(m_db, "UPDATE tokens SET revoked = 1 WHERE name = ? AND revoked = 0").bind(1, name).run();
  return m_db.changes();
}

void SqliteCatalog::set_device_name(const std::string& id, const std::string& name) {
  util::Stmt(m_db, "UPDATE devices SET name = ? WHERE id = ?").bind(1, name).bind(2, id).run();
}

std::map<std::string, DeviceActivity> SqliteCatalog::device_activity() {
  util::Transaction reads(m_db, util::Transaction::Mode::deferred);  // one state, one lock
  std::map<std::string, DeviceActivity> out;
  // SQLite takes a bare column (id) from the row max() picked.
  util::Stmt snaps(m_db, "SELECT device, id, max(created_at), count(*), sum(pinned) FROM snapshots GROUP BY device");
  while (snaps.step()) {
    auto& a = out[snaps.text(0)];
    a.last_snapshot = snaps.text(1);
    a.last_sync = snaps.int64(2);
    a.snapshots = snaps.int64(3);
    a.pinned = snaps.int64(4);
  }
  util::Stmt orders(m_db, "SELECT device, count(*) FROM orders WHERE state = 'pending' GROUP BY device");
  while (orders.step()) out[orders.text(0)].pending_orders = orders.int64(1);
  util::Stmt given(m_db, "SELECT device, given FROM assignments");
  while (given.step()) {
    auto layers = parse_json_col(given.text(1)).value("layers", nlohmann::json::array());
    auto& a = out[given.text(0)];
    for (const auto& l : layers)
      if (l.is_string()) a.layers.push_back(l.get<std::string>());
  }
  reads.commit();
  return out;
}

std::vector<int64_t> SqliteCatalog::last_syncs(DeviceState state) {
  util::Stmt s(m_db, "SELECT (SELECT max(created_at) FROM snapshots WHERE device = d.id) FROM devices d WHERE d.state = ?");
  s.bind(1, std::string(state_name(state)));
  std::vector<int64_t> out;
  while (s.step()) out.push_back(s.int64(0));
  return out;
}

int64_t SqliteCatalog::device_count(DeviceState state) {
  return util::Stmt(m_db, "SELECT count(*) FROM devices WHERE state = ?").bind(1, std::string(state_name(state))).scalar();
}

void SqliteCatalog::delete_device(const std::string& id) {
  for (const char* table : {"snapshots", "orders", "assignments", "captures", "device_credentials", "cvds", "reenrolments",
                            "migration_checks"})
    util::Stmt(m_db, std::string("DELETE FROM ") + table + " WHERE device = ?").bind(1, id).run();
  util::Stmt(m_db, "DELETE FROM uploads WHERE source = ?").bind(1, id).run();
  util::Stmt(m_db, "DELETE FROM devices WHERE id = ?").bind(1, id).run();
}

void SqliteCatalog::set_device_replaced(const std::string& id, const std::string& by) {
  util::Stmt(m_db, "UPDATE devices SET state = 'replaced', replaced_by = ? WHERE id = ?").bind(1, by).bind(2, id).run();
}

void SqliteCatalog::move_cvd(const std::string& from, const std::string& to) {
  // The receiving device's own assignment and CVD history (if any) give way to the CVD's.
  for (const char* table : {"assignments", "cvds"})
    util::Stmt(m_db, std::string("DELETE FROM ") + table + " WHERE device = ?").bind(1, to).run();
  for (const char* table : {"snapshots", "assignments", "cvds"})
    util::Stmt(m_db, std::string("UPDATE ") + table + " SET device = ?1 WHERE device = ?2").bind(1, to).bind(2, from).run();
  util::Stmt(m_db, "UPDATE orders SET device = ?1 WHERE device = ?2 AND state <> 'pending'").bind(1, to).bind(2, from).run();
}

namespace {

Reenrolment reenrolment_from(util::Stmt& s) {
  return {s.text(0), s.text(1), s.text(2), parse_json_col(s.text(3)), s.int64(4), s.int64(5), s.int64(6), s.text(7)};
}

constexpr const char* k_reenrolment_cols =
    "device, hash, hostname, inventory, requested_at, last_seen, contested, contender_hash";

}  // namespace

std::optional<Reenrolment> SqliteCatalog::reenrolment(const std::string& device) {
  util::Stmt s(m_db, std::string("SELECT ") + k_reenrolment_cols + " FROM reenrolments WHERE device = ?");
  s.bind(1, device);
  if (!s.step()) return std::nullopt;
  return reenrolment_from(s);
}

std::vector<Reenrolment> SqliteCatalog::reenrolments() {
  util::Stmt s(m_db, std::string("SELECT ") + k_reenrolment_cols + " FROM reenrolments ORDER BY requested_at, device");
  std::vector<Reenrolment> out;
  while (s.step()) out.push_back(reenrolment_from(s));
  return out;
}

void SqliteCatalog::set_reenrolment(const Reenrolment& r) {
  util::Stmt(m_db, std::string("INSERT OR REPLACE INTO reenrolments(") + k_reenrolment_cols +
                       ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
      .bind(1, r.device)
      .bind(2, r.hash)
      .bind(3, r.hostname)
      .bind(4, r.inventory.dump())
      .bind(5, r.requested_at)
      .bind(6, r.last_seen)
      .bind(7, r.contested)
      .bind(8, r.contender_hash)
      .run();
}

void SqliteCatalog::delete_reenrolment(const std::string& device) {
  util::Stmt(m_db, "DELETE FROM reenrolments WHERE device = ?").bind(1, device).run();
}

std::optional<nlohmann::json> SqliteCatalog::policy(const std::string& name) {
  util::Stmt s(m_db, "SELECT doc FROM policies WHERE name = ?");
  s.bind(1, name);
  if (!s.step()) return std::nullopt;
  return nlohmann::json::parse(s.text(0));
}

void SqliteCatalog::set_policy(const std::string& name, const nlohmann::json& doc) {
  util::Stmt(m_db, "INSERT INTO policies(name, doc) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET doc = excluded.doc")
      .bind(1, name)
      .bind(2, doc.dump())
      .run();
}

std::vector<std::string> SqliteCatalog::policies() {
  util::Stmt s(m_db, "SELECT name FROM policies ORDER BY name");
  std::vector<std::string> out;
  while (s.step()) out.push_back(s.text(0));
  return out;
}

void SqliteCatalog::set_device_tags(const std::string& id, const std::vector<std::string>& tags) {
  util::Stmt(m_db, "UPDATE devices SET tags = ? WHERE id = ?").bind(1, nlohmann::json(tags).dump()).bind(2, id).run();
}

void SqliteCatalog::set_device_volume(const std::string& id, int64_t volume) {
  util::Stmt(m_db, "UPDATE devices SET volume = ? WHERE id = ?").bind(1, volume).bind(2, id).run();
}

void SqliteCatalog::touch_upload(const std::string& source) {
  int64_t now = util::now_ns();
  // An upload touches with each put (every few milliseconds), and GC counts it abandoned
  // only after an hour of silence: a touch within a second of the last is not written,
  // which spares each put a write transaction of its own. (A read, ended before the
  // write below: scalar() leaves no read open for it to upgrade.)
  int64_t last = util::Stmt(m_db, "SELECT coalesce(max(touched_at), 0) FROM uploads WHERE source = ?")
                     .bind(1, source)
                     .scalar();
  if (last <= now && now - last < k_touch_granularity_ns) return;
  util::Stmt(m_db,
             "INSERT INTO uploads(source, started_at, touched_at) VALUES (?, ?, ?) "
             "ON CONFLICT(source) DO UPDATE SET touched_at = excluded.touched_at")
      .bind(1, source)
      .bind(2, now)
      .bind(3, now)
      .run();
}

void SqliteCatalog::end_upload(const std::string& source) {
  util::Stmt(m_db, "DELETE FROM uploads WHERE source = ?").bind(1, source).run();
}

void SqliteCatalog::set_collection(const std::string& name, const std::string& kind, const nlohmann::json& spec) {
  util::Stmt(m_db,
             "INSERT INTO collections(name, kind, spec, created_at) VALUES (?, ?, ?, ?) "
             "ON CONFLICT(name) DO UPDATE SET kind = excluded.kind, spec = excluded.spec")
      .bind(1, name)
      .bind(2, kind)
      .bind(3, spec.dump())
      .bind(4, util::now_ns())
      .run();
}

std::optional<std::pair<std::string, nlohmann::json>> SqliteCatalog::collection(const std::string& name) {
  util::Stmt s(m_db, "SELECT kind, spec FROM collections WHERE name = ?");
  s.bind(1, name);
  if (!s.step()) return std::nullopt;
  return std::make_pair(s.text(0), parse_json_col(s.text(1)));
}

std::vector<std::string> SqliteCatalog::collections() {
  util::Stmt s(m_db, "SELECT name FROM collections ORDER BY name");
  std::vector<std::string> out;
  while (s.step()) out.push_back(s.text(0));
  return out;
}

bool SqliteCatalog::delete_collection(const std::string& name) {
  util::Stmt(m_db, "DELETE FROM collections WHERE name = ?").bind(1, name).run();
  return m_db.changes() > 0;
}

void SqliteCatalog::add_event(const std::string& type, const std::string& device, const nlohmann::json& detail) {
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

uint32_t SqliteCatalog::add_layer(const std::string& name, const std::string& kind, const Digest& tree,
                            const nlohmann::json& manifest) {
  // Past the highest ever given (a deleted newest version keeps its number: old orders
  // and events name it).
  util::Stmt max(m_db, "SELECT max(coalesce((SELECT max(version) FROM layers WHERE name = ?1), 0), "
                       "coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'layer_version:' || ?1), 0))");
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

std::vector<LayerRow> SqliteCatalog::layers(const std::string& name) {
  util::Stmt s(m_db, std::string("SELECT ") + k_layer_cols + " FROM layers" + (name.empty() ? "" : " WHERE name = ?") +
                         " ORDER BY name, version");
  if (!name.empty()) s.bind(1, name);
  std::vector<LayerRow> out;
  while (s.step()) out.push_back(layer_from(s));
  return out;
}

void SqliteCatalog::delete_layer(const std::string& name, uint32_t version) {
  util::Stmt(m_db, "INSERT INTO meta(key, value) VALUES ('layer_version:' || ?1, ?2) ON CONFLICT(key) DO UPDATE "
                   "SET value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))")
      .bind(1, name)
      .bind(2, int64_t(version))
      .run();
  util::Stmt(m_db, "DELETE FROM layers WHERE name = ? AND version = ?").bind(1, name).bind(2, int64_t(version)).run();
}

std::optional<LayerRow> SqliteCatalog::layer(const std::string& name, uint32_t version) {
  util::Stmt s(m_db, std::string("SELECT ") + k_layer_cols + " FROM layers WHERE name = ?" +
                         (version ? " AND version = ?" : " ORDER BY version DESC LIMIT 1"));
  s.bind(1, name);
  if (version) s.bind(2, int64_t(version));
  if (!s.step()) return std::nullopt;
  return layer_from(s);
}

void SqliteCatalog::add_order(const Order& o) {
  util::Stmt(m_db, "INSERT INTO orders(id, device, spec, state, created_at) VALUES (?, ?, ?, ?, ?)")
      .bind(1, o.id)
      .bind(2, o.device)
      .bind(3, o.spec.dump())
      .bind(4, o.state)
      .bind(5, o.created_at)
      .run();
}

std::vector<Order> SqliteCatalog::orders(const std::string& device, const std::string& state) {
  util::Stmt s(m_db, std::string("SELECT ") + k_order_cols + " FROM orders WHERE device = ?" +
                         (state.empty() ? "" : " AND state = ?") + " ORDER BY created_at, rowid");
  s.bind(1, device);
  if (!state.empty()) s.bind(2, state);
  std::vector<Order> out;
  while (s.step()) out.push_back(order_from(s));
  return out;
}

std::optional<Order> SqliteCatalog::order(const std::string& id) {
  util::Stmt s(m_db, std::string("SELECT ") + k_order_cols + " FROM orders WHERE id = ?");
  s.bind(1, id);
  if (!s.step()) return std::nullopt;
  return order_from(s);
}

void SqliteCatalog::finish_order(const std::string& id, const std::string& state, const nlohmann::json& result) {
  util::Stmt(m_db, "UPDATE orders SET state = ?, finished_at = ?, result = ? WHERE id = ?")
      .bind(1, state)
      .bind(2, util::now_ns())
      .bind(3, result.dump())
      .bind(4, id)
      .run();
}

nlohmann::json SqliteCatalog::given(const std::string& device) {
  util::Stmt s(m_db, "SELECT given FROM assignments WHERE device = ?");
  s.bind(1, device);
  if (!s.step()) return nlohmann::json::object();
  return parse_json_col(s.text(0));
}

void SqliteCatalog::set_given(const std::string& device, const nlohmann::json& given) {
  util::Stmt(m_db, "INSERT INTO assignments(device, given, updated_at) VALUES (?, ?, ?) "
                   "ON CONFLICT(device) DO UPDATE SET given = excluded.given, updated_at = excluded.updated_at")
      .bind(1, device)
      .bind(2, given.dump())
      .bind(3, util::now_ns())
      .run();
}

void SqliteCatalog::set_capture(const std::string& device, const std::string& snapshot) {
  util::Stmt(m_db, "INSERT OR REPLACE INTO captures(device, snapshot, started_at) VALUES (?, ?, ?)")
      .bind(1, device)
      .bind(2, snapshot)
      .bind(3, util::now_ns())
      .run();
}

std::optional<std::pair<nlohmann::json, int64_t>> SqliteCatalog::migration_check(const std::string& device) {
  util::Stmt s(m_db, "SELECT report, checked_at FROM migration_checks WHERE device = ?");
  s.bind(1, device);
  if (!s.step()) return std::nullopt;
  return std::make_pair(parse_json_col(s.text(0)), s.int64(1));
}

void SqliteCatalog::set_migration_check(const std::string& device, const nlohmann::json& report) {
  util::Stmt(m_db, "INSERT OR REPLACE INTO migration_checks(device, report, checked_at) VALUES (?, ?, ?)")
      .bind(1, device)
      .bind(2, report.dump())
      .bind(3, util::now_ns())
      .run();
}

std::optional<std::string> SqliteCatalog::capture(const std::string& device) {
  util::Stmt s(m_db, "SELECT snapshot FROM captures WHERE device = ?");
  s.bind(1, device);
  if (!s.step()) return std::nullopt;
  return s.text(0);
}

std::optional<std::string> SqliteCatalog::device_credential(const std::string& device) {
  util::Stmt s(m_db, "SELECT hash FROM device_credentials WHERE device = ?");
  s.bind(1, device);
  if (!s.step()) return std::nullopt;
  return s.text(0);
}

void SqliteCatalog::set_device_credential(const std::string& device, const std::string& hash) {
  util::Stmt(m_db, "INSERT OR REPLACE INTO device_credentials(device, hash) VALUES (?, ?)").bind(1, device).bind(2, hash).run();
}

int64_t SqliteCatalog::start_cvd(const std::string& device, const std::string& reason) {
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

std::vector<std::pair<int64_t, int64_t>> SqliteCatalog::cvds(const std::string& device) {
  util::Stmt s(m_db, "SELECT number, started_at FROM cvds WHERE device = ? ORDER BY number");
  s.bind(1, device);
  std::vector<std::pair<int64_t, int64_t>> out;
  while (s.step()) out.emplace_back(s.int64(0), s.int64(1));
  return out;
}

std::vector<nlohmann::json> SqliteCatalog::events(const std::string& device, int64_t since, int64_t after_id,
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

ChunkIndex& SqliteCatalog::chunks() { return *m_chunks; }

namespace {

ChunkLocation location_from(util::Stmt& s, int64_t pack, int col) {
  return {pack, static_cast<uint64_t>(s.int64(col)), static_cast<uint32_t>(s.int64(col + 1)),
          static_cast<uint32_t>(s.int64(col + 2)), static_cast<uint8_t>(s.int64(col + 3))};
}

Digest digest_col(util::Stmt& s, int col, const char* what) {
  auto b = s.blob(col);
  if (b.size() != 32) throw Error(ErrorKind::integrity, std::string("catalog: malformed ") + what);
  return Digest::from_span(b);
}

}  // namespace

void SqliteChunkIndex::delete_chunks(std::span<const Digest> ids) {
  util::Stmt del(m_db, "DELETE FROM chunks WHERE id = ?");
  for (const auto& id : ids) del.bind_blob(1, id.bytes).run();
}

std::vector<std::pair<Digest, ChunkLocation>> SqliteChunkIndex::chunks_in_pack(int64_t pack) {
  util::Stmt s(m_db, "SELECT id, offset, stored, raw, codec FROM chunks WHERE pack = ? ORDER BY offset");
  s.bind(1, pack);
  std::vector<std::pair<Digest, ChunkLocation>> out;
  while (s.step()) out.emplace_back(digest_col(s, 0, "chunk id in index"), location_from(s, pack, 1));
  return out;
}

uint64_t SqliteChunkIndex::pack_chunk_count(int64_t pack) {
  return static_cast<uint64_t>(util::Stmt(m_db, "SELECT count(*) FROM chunks WHERE pack = ?").bind(1, pack).scalar());
}

bool SqliteChunkIndex::move_chunk(const Digest& id, const ChunkLocation& from, int64_t pack, uint64_t offset) {
  util::Stmt(m_db, "UPDATE chunks SET pack = ?, offset = ? WHERE id = ? AND pack = ? AND offset = ?")
      .bind(1, pack)
      .bind(2, static_cast<int64_t>(offset))
      .bind_blob(3, id.bytes)
      .bind(4, from.pack)
      .bind(5, static_cast<int64_t>(from.offset))
      .run();
  return m_db.changes() == 1;
}

void SqliteCatalog::set_pack_size(int64_t id, uint64_t size, int64_t written_at) {
  util::Stmt(m_db, "UPDATE packs SET size = ?, written_at = ? WHERE id = ?")
      .bind(1, static_cast<int64_t>(size))
      .bind(2, written_at)
      .bind(3, id)
      .run();
}

bool SqliteCatalog::retire_pack(int64_t id, uint64_t size, int64_t at) {
  util::Stmt(m_db, "UPDATE packs SET retired_at = ? WHERE id = ? AND size = ? AND retired_at = 0")
      .bind(1, at)
      .bind(2, id)
      .bind(3, static_cast<int64_t>(size))
      .run();
  return m_db.changes() == 1;
}

void SqliteCatalog::delete_pack(int64_t id) { util::Stmt(m_db, "DELETE FROM packs WHERE id = ?").bind(1, id).run(); }

int64_t SqliteCatalog::token_count(const std::string& role) {
  return util::Stmt(m_db, "SELECT count(*) FROM tokens WHERE role = ?").bind(1, role).scalar();
}

UploadsInFlight SqliteCatalog::uploads_in_flight(int64_t touched_since) {
  util::Stmt s(m_db, "SELECT count(*), coalesce(min(started_at), 0) FROM uploads WHERE touched_at >= ?");
  s.bind(1, touched_since);
  s.step();
  UploadsInFlight u{s.int64(0), s.int64(1)};
  s.reset();
  return u;
}

Counts SqliteCatalog::counts(int64_t uploads_since) {
  util::Transaction reads(m_db, util::Transaction::Mode::deferred);  // one state, one lock
  Counts c;
  for (auto state : {DeviceState::pending, DeviceState::accepted, DeviceState::rejected, DeviceState::replaced})
    c.devices[static_cast<size_t>(state)] = device_count(state);
  c.snapshots = util::Stmt(m_db, "SELECT count(*) FROM snapshots").scalar();
  c.chunks = util::Stmt(m_db, "SELECT count(*) FROM chunks").scalar();
  c.pack_bytes = util::Stmt(m_db, "SELECT coalesce(sum(size), 0) FROM packs").scalar();
  c.uploads_in_flight = util::Stmt(m_db, "SELECT count(*) FROM uploads WHERE touched_at >= ?").bind(1, uploads_since).scalar();
  c.orders_pending = util::Stmt(m_db, "SELECT count(*) FROM orders WHERE state = 'pending'").scalar();
  reads.commit();
  return c;
}

std::unique_ptr<Lock> SqliteCatalog::gc_lock() {
  return std::make_unique<FlockLock>(std::filesystem::path(m_path).parent_path() / "gc.lock");
}

std::unique_ptr<MarkSet> SqliteCatalog::begin_marks() { return std::make_unique<SqliteMarkSet>(m_db); }

std::vector<PackUsage> SqliteCatalog::pack_usage() {
  util::Stmt s(m_db,
               "SELECT p.id, p.name, p.size, p.sealed, p.written_at, v.read_only, p.retired_at, "
               "(SELECT count(*) FROM chunks c WHERE c.pack = p.id), "
               "(SELECT coalesce(sum(c.stored), 0) FROM chunks c WHERE c.pack = p.id) "
               "FROM packs p JOIN volumes v ON v.id = p.volume ORDER BY p.id");
  std::vector<PackUsage> out;
  while (s.step()) {
    PackUsage p;
    p.id = s.int64(0);
    p.name = s.text(1);
    p.size = static_cast<uint64_t>(s.int64(2));
    p.sealed = s.int64(3) != 0;
    p.written_at = s.int64(4);
    p.read_only = s.int64(5) != 0;
    p.retired_at = s.int64(6);
    p.live_chunks = static_cast<uint64_t>(s.int64(7));
    p.live_stored = static_cast<uint64_t>(s.int64(8));
    out.push_back(std::move(p));
  }
  return out;
}

namespace {

/// `db` with GC's temporary tables made and emptied (they live as long as the connection).
util::Db& with_empty_marks(util::Db& db) {
  db.exec(
      "CREATE TEMP TABLE IF NOT EXISTS gc_live(id BLOB PRIMARY KEY) WITHOUT ROWID;"
      "CREATE TEMP TABLE IF NOT EXISTS gc_trees(id BLOB PRIMARY KEY) WITHOUT ROWID;"
      "CREATE TEMP TABLE IF NOT EXISTS gc_skip(id TEXT PRIMARY KEY) WITHOUT ROWID;"
      "DELETE FROM temp.gc_live; DELETE FROM temp.gc_trees; DELETE FROM temp.gc_skip;");
  return db;
}

}  // namespace

SqliteMarkSet::SqliteMarkSet(util::Db& db)
    : m_db(with_empty_marks(db)),
      m_live(db, "INSERT OR IGNORE INTO temp.gc_live(id) VALUES (?)"),
      m_tree(db, "INSERT OR IGNORE INTO temp.gc_trees(id) VALUES (?)"),
      m_contains(db, "SELECT count(*) FROM temp.gc_live WHERE id = ?") {}

bool SqliteMarkSet::add_tree(const Digest& id) {
  m_tree.bind_blob(1, id.bytes).run();
  return m_db.changes() != 0;
}

void SqliteMarkSet::add_live(const Digest& id) { m_live.bind_blob(1, id.bytes).run(); }

bool SqliteMarkSet::contains(const Digest& id) { return m_contains.bind_blob(1, id.bytes).scalar() != 0; }

void SqliteMarkSet::skip_snapshots(std::span<const std::string> ids) {
  util::Stmt add(m_db, "INSERT OR IGNORE INTO temp.gc_skip(id) VALUES (?)");
  for (const auto& id : ids) add.bind(1, id).run();
}

std::vector<Digest> SqliteMarkSet::new_roots() {
  std::vector<Digest> roots;
  for (const char* sql : {"SELECT DISTINCT tree FROM snapshots WHERE tree NOT IN (SELECT id FROM temp.gc_trees) "
                          "AND id NOT IN (SELECT id FROM temp.gc_skip)",
                          "SELECT DISTINCT tree FROM layers WHERE tree NOT IN (SELECT id FROM temp.gc_trees)"}) {
    util::Stmt s(m_db, sql);
    while (s.step()) roots.push_back(digest_col(s, 0, "root tree id"));
  }
  return roots;
}

std::vector<SweepEntry> SqliteMarkSet::sweep_candidates(const std::optional<Digest>& after, size_t limit) {
  util::Stmt page(m_db, std::string("SELECT c.id, c.added_at, c.stored, l.id IS NOT NULL FROM chunks c "
                                    "LEFT JOIN temp.gc_live l ON l.id = c.id ") +
                            (after ? "WHERE c.id > ? " : "") + "ORDER BY c.id LIMIT " + std::to_string(limit));
  if (after) page.bind_blob(1, after->bytes);
  std::vector<SweepEntry> out;
  while (page.step())
    out.push_back({digest_col(page, 0, "chunk id in index"), page.int64(1), static_cast<uint32_t>(page.int64(2)),
                   page.int64(3) != 0});
  return out;
}

std::unique_ptr<Catalog> open(const std::string& path, bool create, Access access) {
  return std::make_unique<SqliteCatalog>(
      path, create, access == Access::read_only ? util::Db::Access::read_only : util::Db::Access::read_write);
}

}  // namespace mirage::catalog::sqlite
