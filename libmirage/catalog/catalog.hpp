#pragma once
// The catalog: devices, snapshots, packs and the chunk index, tokens, policies, events,
// layers, orders. An interface of named operations: no connection and no SQL leave it.
// A backend implements it (catalog/sqlite/: SQLite in WAL mode; a server-shared one
// later) and passes tests/unit/test_catalog_conformance.cpp. catalog::open() picks the
// backend. One Catalog per thread: a backend's connection is not shared.
#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "libmirage/util/digest.hpp"

namespace mirage::catalog {

using util::Digest;

/// replaced: another device took over its CVD (mirage-restore --from-device); it may no
/// longer sync, and its row stays so that it is told so.
enum class DeviceState { pending, accepted, rejected, replaced };
std::string_view state_name(DeviceState s);
DeviceState state_from_name(std::string_view name);

struct Device {
  std::string id;
  DeviceState state = DeviceState::pending;
  bool reference = false;
  std::string hostname;
  std::string policy = "default";
  nlohmann::json inventory = nlohmann::json::object();
  int64_t registered_at = 0;
  int64_t last_seen = 0;
  std::vector<std::string> tags;  ///< set by admins, for dynamic collections
  int64_t volume = 0;             ///< where the CVD's new data goes (0: not placed yet)
  std::string name;               ///< what admins call it (mirage device rename; "" none)
  std::string replaced_by;        ///< the device that took over its CVD ("" none)
};
void to_json(nlohmann::json& j, const Device& d);

/// A registration of an accepted device's id by a machine without its credential (the
/// disk was lost or replaced): it waits until an admin re-enrolls the device (the
/// credential `hash` then becomes the device's) or drops it. One per device.
struct Reenrolment {
  std::string device;
  std::string hash;      ///< SHA-256 (hex) of the waiting machine's secret
  std::string hostname;  ///< what the waiting machine reported
  nlohmann::json inventory = nlohmann::json::object();
  int64_t requested_at = 0;
  int64_t last_seen = 0;
  int64_t contested = 0;        ///< registrations of the id with another secret since
  std::string contender_hash;  ///< the last of those ("" none)
};

/// What a device list shows beside a device, read for every device in one batch.
struct DeviceActivity {
  std::string last_snapshot;  ///< the newest snapshot's id ("" none)
  int64_t last_sync = 0;      ///< when it was committed (ns; 0: never)
  int64_t snapshots = 0;
  int64_t pinned = 0;
  int64_t pending_orders = 0;
  std::vector<std::string> layers;  ///< what it was last given (NAME@VERSION)
};

struct Snapshot {
  std::string id;
  std::string device;
  Digest tree;
  std::vector<uint8_t> root;  ///< the encoded root directory entry (tree::encode_entry)
  int64_t created_at = 0;
  nlohmann::json stats = nlohmann::json::object();
  bool pinned = false;
  /// What the device had been given when the snapshot was committed (Catalog::given's
  /// {"layers", "id_map", ...}); {} before any assignment and for snapshots committed
  /// before schema 6 recorded it. A revert to the snapshot gives the device this again.
  nlohmann::json given = nlohmann::json::object();
};
void to_json(nlohmann::json& j, const Snapshot& s);

/// Where a chunk lives: the record at `offset` in pack `pack` (see store/pack.hpp).
struct ChunkLocation {
  int64_t pack = 0;
  uint64_t offset = 0;
  uint32_t stored = 0;
  uint32_t raw = 0;
  uint8_t codec = 0;
};

struct Pack {
  int64_t id = 0;
  std::string name;
  int64_t volume = 0;
  uint64_t size = 0;  ///< bytes covered by indexed records (the file may hold an unindexed tail)
  int64_t retired_at = 0;  ///< when GC retired it (ns; 0: live): it gains no records, its file goes after the grace
};

struct Volume {
  int64_t id = 0;
  std::string path;
  bool read_only = false;
};

/// A stored layer version; the manifest is layer/image.hpp's.
struct LayerRow {
  std::string name;
  uint32_t version = 0;
  std::string kind;
  Digest tree;
  nlohmann::json manifest;
  int64_t created_at = 0;
};
void to_json(nlohmann::json& j, const LayerRow& l);

/// An order on a device's queue: pending until the endpoint reports (done, failed),
/// or superseded by a newer one.
struct Order {
  std::string id;
  std::string device;
  nlohmann::json spec;
  std::string state = "pending";
  int64_t created_at = 0;
  int64_t finished_at = 0;
  nlohmann::json result = nlohmann::json::object();
};
void to_json(nlohmann::json& j, const Order& o);

/// How a catalog is opened: read_only for a store on a read-only filesystem (check and
/// restore), which changes nothing.
enum class Access { read_write, read_only };

/// The backend's side of a Transaction.
class BackendTransaction {
 public:
  virtual ~BackendTransaction() = default;
  virtual void commit() = 0;
};

class Catalog;

/// A unit of work on the catalog: a write transaction (the default), or a batch of
/// reads that sees one state and takes one lock instead of one per statement (GC's
/// mark set may be written inside one). commit() commits; the destructor rolls back
/// what was not committed. Transactions do not nest.
class Transaction {
 public:
  enum class Mode { write, read };
  explicit Transaction(Catalog& catalog, Mode mode = Mode::write);
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction();
  void commit();

 private:
  std::unique_ptr<BackendTransaction> m_tx;
};

/// The chunk index: where each stored chunk lives. The hot path of every upload and
/// read, so its own interface: at scale it may live apart from the rest of the catalog.
/// Its operations join the catalog's transactions (a Transaction on the Catalog that
/// gave it covers them).
class ChunkIndex {
 public:
  virtual ~ChunkIndex() = default;
  virtual std::optional<ChunkLocation> find_chunk(const Digest& id) = 0;
  /// find_chunk for many ids at once, answers in the order asked. The ids are looked
  /// up in sorted order: an index kept sorted by id (a b-tree) is then walked once
  /// instead of at random, so a large batch reads each page once. Call it inside a
  /// Transaction to see one state.
  virtual std::vector<std::optional<ChunkLocation>> find_chunks(std::span<const Digest> ids);
  /// Indexes chunks written to `pack` (an id already indexed keeps its location) and
  /// records the pack's new indexed size, in one transaction. False (and nothing
  /// indexed) when GC retired the pack meanwhile: the caller writes them again.
  virtual bool add_chunks(std::span<const std::pair<Digest, ChunkLocation>> chunks, int64_t pack,
                          uint64_t pack_size) = 0;
  /// Calls fn(id, location) for every indexed chunk, in pack then offset order.
  virtual void for_each_chunk(const std::function<void(const Digest&, const ChunkLocation&)>& fn) = 0;
  virtual uint64_t chunk_count() = 0;
  /// Drops these ids from the index (absent ones are ignored).
  virtual void delete_chunks(std::span<const Digest> ids) = 0;
  /// The chunks indexed in `pack`, in offset order.
  virtual std::vector<std::pair<Digest, ChunkLocation>> chunks_in_pack(int64_t pack) = 0;
  virtual uint64_t pack_chunk_count(int64_t pack) = 0;
  /// Points `id` at (`pack`, `offset`) if it is still at `from` (GC's repack; a chunk
  /// deleted or moved meanwhile is left alone). Returns whether it moved.
  virtual bool move_chunk(const Digest& id, const ChunkLocation& from, int64_t pack, uint64_t offset) = 0;
};

/// Gauges for /metrics, read in one batch.
struct Counts {
  std::array<int64_t, 4> devices{};  ///< by DeviceState (pending, accepted, rejected, replaced)
  int64_t snapshots = 0;
  int64_t chunks = 0;
  int64_t pack_bytes = 0;          ///< bytes of packs the index covers
  int64_t uploads_in_flight = 0;   ///< touched since the time counts() was given
  int64_t orders_pending = 0;
};

/// Uploads that count as in flight: how many, and when the oldest of them began.
struct UploadsInFlight {
  int64_t count = 0;
  int64_t oldest_start = 0;  ///< ns; meaningless when count is 0
};

/// A pack as GC weighs it.
struct PackUsage {
  int64_t id = 0;
  std::string name;
  uint64_t size = 0;
  bool sealed = false;
  int64_t written_at = 0;
  bool read_only = false;  ///< its volume is read-only
  int64_t retired_at = 0;
  uint64_t live_chunks = 0;  ///< chunks indexed in it
  uint64_t live_stored = 0;  ///< their stored bytes (without record headers)
};

/// A chunk of the index as GC's sweep sees it.
struct SweepEntry {
  Digest id;
  int64_t added_at = 0;
  uint32_t stored = 0;
  bool live = false;  ///< in the mark set
};

/// GC's live set: the trees walked and every id reachable from them. Kept by the
/// backend (SQLite: temporary tables, on disk, so memory stays bounded however large
/// the store). One per Catalog at a time; Catalog::begin_marks() starts it empty.
class MarkSet {
 public:
  virtual ~MarkSet() = default;
  /// Records a tree as walked; false when it was already (shared subtrees are walked once).
  virtual bool add_tree(const Digest& id) = 0;
  /// Marks an id (a tree object or a chunk) live.
  virtual void add_live(const Digest& id) = 0;
  virtual bool contains(const Digest& id) = 0;
  /// Leaves these snapshots' roots out of new_roots(), as if they were gone: a dry
  /// run's view of the retention a real run applies first.
  virtual void skip_snapshots(std::span<const std::string> ids) = 0;
  /// Root trees of snapshots (but skipped ones) and layers not walked yet (each once).
  virtual std::vector<Digest> new_roots() = 0;
  /// Up to `limit` indexed chunks after `after` (from the first when nullopt), in id
  /// order, each with whether it is marked live: the sweep's next page.
  virtual std::vector<SweepEntry> sweep_candidates(const std::optional<Digest>& after, size_t limit) = 0;
};

/// Held while one GC runs; released on destruction (or when the process dies).
class Lock {
 public:
  virtual ~Lock() = default;
};

class Catalog {
 public:
  virtual ~Catalog() = default;

  /// The chunk index (the hot path; see ChunkIndex).
  virtual ChunkIndex& chunks() = 0;
  /// Shorthands for the two calls of the upload path.
  std::optional<ChunkLocation> find_chunk(const Digest& id) { return chunks().find_chunk(id); }
  bool add_chunks(std::span<const std::pair<Digest, ChunkLocation>> list, int64_t pack, uint64_t pack_size) {
    return chunks().add_chunks(list, pack, pack_size);
  }

  virtual std::optional<Device> device(const std::string& id) = 0;
  /// Devices by registration time, in one state when given.
  virtual std::vector<Device> devices(std::optional<DeviceState> state) = 0;
  /// Inserts a device (tags and volume start empty); throws when the id exists.
  virtual void add_device(const Device& d) = 0;
  virtual void set_device_state(const std::string& id, DeviceState state, bool reference) = 0;
  virtual void set_device_policy(const std::string& id, const std::string& policy) = 0;
  /// Records the hostname and inventory a device reported, and that it was seen now.
  virtual void touch_device(const std::string& id, const std::string& hostname, const nlohmann::json& inventory) = 0;
  virtual void set_device_tags(const std::string& id, const std::vector<std::string>& tags) = 0;
  virtual void set_device_volume(const std::string& id, int64_t volume) = 0;
  virtual void set_device_name(const std::string& id, const std::string& name) = 0;
  virtual int64_t device_count(DeviceState state) = 0;
  /// Every device's activity by id, in one read batch (a device without any has none).
  virtual std::map<std::string, DeviceActivity> device_activity() = 0;
  /// When each device in `state` last synced (its newest snapshot, ns; 0: never), one
  /// entry per device: /metrics buckets them.
  virtual std::vector<int64_t> last_syncs(DeviceState state) = 0;
  /// Forgets a device: its row, snapshots, orders, assignment, capture, credential,
  /// CVD history and upload (GC then reclaims the data only it referenced). Call in a
  /// transaction.
  virtual void delete_device(const std::string& id) = 0;
  /// Marks `id` replaced by `by` (state replaced, replaced_by).
  virtual void set_device_replaced(const std::string& id, const std::string& by) = 0;
  /// Moves a CVD from one device to another: its snapshots, CVD history, assignment
  /// and finished orders (pending ones stay with `from`). Call in a transaction.
  virtual void move_cvd(const std::string& from, const std::string& to) = 0;

  /// The registration waiting for a device's re-enrolment, if any.
  virtual std::optional<Reenrolment> reenrolment(const std::string& device) = 0;
  /// Every waiting re-enrolment, oldest first.
  virtual std::vector<Reenrolment> reenrolments() = 0;
  /// Inserts or replaces the device's waiting re-enrolment.
  virtual void set_reenrolment(const Reenrolment& r) = 0;
  virtual void delete_reenrolment(const std::string& device) = 0;

  virtual void add_snapshot(const Snapshot& s) = 0;
  /// Snapshots of a device, oldest first.
  virtual std::vector<Snapshot> snapshots(const std::string& device) = 0;
  virtual std::vector<Snapshot> all_snapshots() = 0;
  virtual std::optional<Snapshot> snapshot(const std::string& id) = 0;
  virtual void delete_snapshot(const std::string& id) = 0;

  virtual std::vector<Volume> volumes() = 0;
  /// Adds a volume at `path` (a URL, store/volume.hpp); returns its id.
  virtual int64_t add_volume(const std::string& path) = 0;
  virtual void set_volume_read_only(int64_t id, bool read_only) = 0;

  /// Adds a pack (written now, size 0) and returns its id, never one given before.
  virtual int64_t add_pack(const std::string& name, int64_t volume) = 0;
  /// Every pack, retired ones too, by id.
  virtual std::vector<Pack> packs() = 0;
  virtual std::optional<Pack> pack(int64_t id) = 0;
  /// Marks a pack as complete: no writer appends to it again (GC may repack it).
  virtual void seal_pack(int64_t id) = 0;
  /// Records a pack's indexed size and when it was written (GC's repack target).
  virtual void set_pack_size(int64_t id, uint64_t size, int64_t written_at) = 0;
  /// Retires a pack at time `at` if it is live and still `size` bytes (no writer added
  /// records since GC looked); returns whether it did. A retired pack gains no records.
  virtual bool retire_pack(int64_t id, uint64_t size, int64_t at) = 0;
  /// Deletes a pack's row (its file is the caller's).
  virtual void delete_pack(int64_t id) = 0;

  /// `expires_at` in ns since the epoch; 0: never.
  virtual void add_token(const std::string& hash, const std::string& name, const std::string& role,
                         int64_t expires_at = 0) = 0;
  /// (role, name) of a live token (not revoked, not expired) with this SHA-256 hash, or nullopt.
  virtual std::optional<std::pair<std::string, std::string>> token_role(const std::string& hash) = 0;
  /// Every token (never its secret): name, role, created, revoked, expires, expired.
  virtual std::vector<nlohmann::json> tokens() = 0;
  /// The role of the live token named `name`, or nullopt.
  virtual std::optional<std::string> live_token_role(const std::string& name) = 0;
  /// True when a token not revoked (expired or not) has this name.
  virtual bool token_name_taken(const std::string& name) = 0;
  /// Admin tokens neither revoked nor expired.
  virtual int64_t live_admin_tokens() = 0;
  /// Tokens of `role` ever issued, revoked and expired ones included.
  virtual int64_t token_count(const std::string& role) = 0;
  /// Revokes the live tokens named `name`; returns how many.
  virtual int revoke_token(const std::string& name) = 0;

  virtual std::optional<nlohmann::json> policy(const std::string& name) = 0;
  virtual void set_policy(const std::string& name, const nlohmann::json& doc) = 0;
  /// Names of the stored policies (the built-in "default" only if stored).
  virtual std::vector<std::string> policies() = 0;

  /// An upload in flight from `source` (a device, or "capture:" and a token name): it
  /// started with its first chunks and ends with its commit. GC keeps every chunk added
  /// since the oldest upload still active started. A touch moves the upload's last touch
  /// only when that is a second old or more (a put comes every few milliseconds; an
  /// upload counts as abandoned after an hour): it spares each put a write.
  virtual void touch_upload(const std::string& source) = 0;
  virtual void end_upload(const std::string& source) = 0;
  /// The uploads touched at or after `touched_since` (ns).
  virtual UploadsInFlight uploads_in_flight(int64_t touched_since) = 0;

  /// A named set of devices: kind "static" (spec {"devices": [...]}) or "dynamic"
  /// (spec {"match": {...}}, see server/collections.hpp).
  virtual void set_collection(const std::string& name, const std::string& kind, const nlohmann::json& spec) = 0;
  /// (kind, spec) of a collection.
  virtual std::optional<std::pair<std::string, nlohmann::json>> collection(const std::string& name) = 0;
  virtual std::vector<std::string> collections() = 0;
  virtual bool delete_collection(const std::string& name) = 0;

  virtual void add_event(const std::string& type, const std::string& device, const nlohmann::json& detail) = 0;
  /// Events in id order (at most 10000): at or after `since` (ns), after `after_id`, of one
  /// device when given, of one type (or its family: "order" is order.created, order.done...).
  virtual std::vector<nlohmann::json> events(const std::string& device, int64_t since, int64_t after_id,
                                             const std::string& type = "") = 0;

  /// Stores the next version of layer `name` and returns its number (call in a transaction).
  virtual uint32_t add_layer(const std::string& name, const std::string& kind, const Digest& tree,
                             const nlohmann::json& manifest) = 0;
  /// Every version of `name` (of every layer when empty), by name then version.
  virtual std::vector<LayerRow> layers(const std::string& name) = 0;
  /// Version `version` of `name`, or its latest when 0.
  virtual std::optional<LayerRow> layer(const std::string& name, uint32_t version) = 0;
  /// Forgets a layer version (GC then reclaims what only it referenced); its number is
  /// not given again while a newer version exists.
  virtual void delete_layer(const std::string& name, uint32_t version) = 0;

  virtual void add_order(const Order& o) = 0;
  /// A device's orders, oldest first, in one state when given.
  virtual std::vector<Order> orders(const std::string& device, const std::string& state) = 0;
  virtual std::optional<Order> order(const std::string& id) = 0;
  virtual void finish_order(const std::string& id, const std::string& state, const nlohmann::json& result) = 0;

  /// What a device was last given ({"layers": [...], "id_map": {...}}), {} before any.
  virtual nlohmann::json given(const std::string& device) = 0;
  virtual void set_given(const std::string& device, const nlohmann::json& given) = 0;

  /// SHA-256 (hex) of the device's credential secret, set when it first registered.
  virtual std::optional<std::string> device_credential(const std::string& device) = 0;
  virtual void set_device_credential(const std::string& device, const std::string& hash) = 0;

  /// Starts a new CVD for a device (after a provision): its snapshots from now on count
  /// as CVD number N (the first CVD, from registration, is 1). Returns N.
  virtual int64_t start_cvd(const std::string& device, const std::string& reason) = 0;
  /// The CVDs started after the first: (number, started_at ns), in order.
  virtual std::vector<std::pair<int64_t, int64_t>> cvds(const std::string& device) = 0;

  /// A device's latest OS-migration preflight report (migrate/preflight.hpp's JSON) and
  /// when it was stored (ns); nullopt before any. A new report replaces the old one.
  virtual std::optional<std::pair<nlohmann::json, int64_t>> migration_check(const std::string& device) = 0;
  virtual void set_migration_check(const std::string& device, const nlohmann::json& report) = 0;

  /// An app capture in progress on a reference device: the snapshot before the install.
  virtual void set_capture(const std::string& device, const std::string& snapshot) = 0;
  virtual std::optional<std::string> capture(const std::string& device) = 0;

  /// Gauges for /metrics, in one read batch (call outside a transaction); uploads count
  /// as in flight when touched at or after `uploads_since`.
  virtual Counts counts(int64_t uploads_since) = 0;

  /// GC: one collection at a time per store. Throws Error(precondition) when another
  /// holds it.
  virtual std::unique_ptr<Lock> gc_lock() = 0;
  /// GC: a new, empty mark set (replacing any earlier one of this Catalog).
  virtual std::unique_ptr<MarkSet> begin_marks() = 0;
  /// GC: every pack with its volume's read-only flag and what the index holds in it, by id.
  virtual std::vector<PackUsage> pack_usage() = 0;

 protected:
  friend class Transaction;
  /// Begins a backend transaction (Transaction's constructor).
  virtual std::unique_ptr<BackendTransaction> begin(Transaction::Mode mode) = 0;
};

/// Opens the catalog at `path` (today a SQLite file; catalog/sqlite/), creating the
/// schema when `create` is set; throws Error(not_found) when it is missing and `create`
/// is not set. Read-only it changes nothing and needs the current schema
/// (Error(precondition) otherwise).
std::unique_ptr<Catalog> open(const std::string& path, bool create, Access access = Access::read_write);

}  // namespace mirage::catalog
