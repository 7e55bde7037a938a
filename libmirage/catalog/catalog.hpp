#pragma once
// The catalog: devices, snapshots, packs and the chunk index, tokens, policies, events.
// SQLite in WAL mode; one Catalog per thread (connections are not shared).
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "libmirage/util/digest.hpp"
#include "libmirage/util/sqlite.hpp"

namespace mirage::catalog {

using util::Digest;

enum class DeviceState { pending, accepted, rejected };
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
};
void to_json(nlohmann::json& j, const Device& d);

struct Snapshot {
  std::string id;
  std::string device;
  Digest tree;
  std::vector<uint8_t> root;  ///< the encoded root directory entry (tree::encode_entry)
  int64_t created_at = 0;
  nlohmann::json stats = nlohmann::json::object();
  bool pinned = false;
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

class Catalog;

/// A unit of work on the catalog: a write transaction (the default), or a batch of
/// reads that sees one state and takes one lock instead of one per statement.
/// commit() commits; the destructor rolls back what was not committed.
class Transaction {
 public:
  enum class Mode { write, read };
  explicit Transaction(Catalog& catalog, Mode mode = Mode::write);
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction();
  void commit();

 private:
  std::unique_ptr<util::Transaction> m_tx;
};

class Catalog {
 public:
  /// Opens the catalog at `path`, creating the schema when `create` is set; throws
  /// Error(not_found) when it is missing and `create` is not set. Read-only (a store
  /// on a read-only filesystem: check and restore) it changes nothing and needs the
  /// current schema (Error(precondition) otherwise).
  Catalog(const std::string& path, bool create, util::Db::Access access = util::Db::Access::read_write);

  util::Db& db() { return m_db; }

  std::optional<Device> device(const std::string& id);
  std::vector<Device> devices(std::optional<DeviceState> state);
  void add_device(const Device& d);
  void set_device_state(const std::string& id, DeviceState state, bool reference);
  void set_device_policy(const std::string& id, const std::string& policy);
  void touch_device(const std::string& id, const std::string& hostname, const nlohmann::json& inventory);

  void add_snapshot(const Snapshot& s);
  /// Snapshots of a device, oldest first.
  std::vector<Snapshot> snapshots(const std::string& device);
  std::vector<Snapshot> all_snapshots();
  void delete_snapshot(const std::string& id);

  std::vector<Volume> volumes();
  int64_t add_volume(const std::string& path);
  void set_volume_read_only(int64_t id, bool read_only);
  int64_t add_pack(const std::string& name, int64_t volume);
  std::vector<Pack> packs();
  std::optional<Pack> pack(int64_t id);
  /// Marks a pack as complete: no writer appends to it again (GC may repack it).
  void seal_pack(int64_t id);

  std::optional<ChunkLocation> find_chunk(const Digest& id);
  /// Indexes chunks written to `pack` and records its new indexed size, in one
  /// transaction. False (and nothing indexed) when GC retired the pack meanwhile.
  bool add_chunks(std::span<const std::pair<Digest, ChunkLocation>> chunks, int64_t pack, uint64_t pack_size);
  /// Calls fn(id, location) for every indexed chunk.
  void for_each_chunk(const std::function<void(const Digest&, const ChunkLocation&)>& fn);
  uint64_t chunk_count();

  /// `expires_at` in ns since the epoch; 0: never.
  void add_token(const std::string& hash, const std::string& name, const std::string& role, int64_t expires_at = 0);
  /// (role, name) of a live token (not revoked, not expired) with this SHA-256 hash, or nullopt.
  std::optional<std::pair<std::string, std::string>> token_role(const std::string& hash);
  /// Every token (never its secret): name, role, created, revoked, expires, expired.
  std::vector<nlohmann::json> tokens();
  /// The role of the live token named `name`, or nullopt.
  std::optional<std::string> live_token_role(const std::string& name);
  bool token_name_taken(const std::string& name);
  /// Admin tokens neither revoked nor expired.
  int64_t live_admin_tokens();
  int64_t device_count(DeviceState state);
  /// Forgets a device: its row, snapshots, orders, assignment, capture, credential and
  /// CVD history (GC then reclaims the data only it referenced). Call in a transaction.
  void delete_device(const std::string& id);
  /// Revokes the live tokens named `name`; returns how many.
  int revoke_token(const std::string& name);

  std::optional<nlohmann::json> policy(const std::string& name);
  void set_policy(const std::string& name, const nlohmann::json& doc);
  /// Names of the stored policies (the built-in "default" only if stored).
  std::vector<std::string> policies();
  void set_device_tags(const std::string& id, const std::vector<std::string>& tags);
  void set_device_volume(const std::string& id, int64_t volume);

  /// An upload in flight from `source` (a device, or "capture:" and a token name): it
  /// started with its first chunks and ends with its commit. GC keeps every chunk added
  /// since the oldest upload still active started.
  void touch_upload(const std::string& source);
  void end_upload(const std::string& source);

  /// A named set of devices: kind "static" (spec {"devices": [...]}) or "dynamic"
  /// (spec {"match": {...}}, see server/collections.hpp).
  void set_collection(const std::string& name, const std::string& kind, const nlohmann::json& spec);
  /// (kind, spec) of a collection.
  std::optional<std::pair<std::string, nlohmann::json>> collection(const std::string& name);
  std::vector<std::string> collections();
  bool delete_collection(const std::string& name);

  void add_event(const std::string& type, const std::string& device, const nlohmann::json& detail);
  /// Events in id order (at most 10000): at or after `since` (ns), after `after_id`, of one
  /// device when given, of one type (or its family: "order" is order.created, order.done...).
  std::vector<nlohmann::json> events(const std::string& device, int64_t since, int64_t after_id,
                                     const std::string& type = "");

  /// Stores the next version of layer `name` and returns its number (call in a transaction).
  uint32_t add_layer(const std::string& name, const std::string& kind, const Digest& tree, const nlohmann::json& manifest);
  /// Every version of `name` (of every layer when empty), by name then version.
  std::vector<LayerRow> layers(const std::string& name);
  /// Version `version` of `name`, or its latest when 0.
  std::optional<LayerRow> layer(const std::string& name, uint32_t version);

  void add_order(const Order& o);
  /// A device's orders, oldest first, in one state when given.
  std::vector<Order> orders(const std::string& device, const std::string& state);
  std::optional<Order> order(const std::string& id);
  void finish_order(const std::string& id, const std::string& state, const nlohmann::json& result);

  /// What a device was last given ({"layers": [...], "id_map": {...}}), {} before any.
  nlohmann::json given(const std::string& device);
  void set_given(const std::string& device, const nlohmann::json& given);

  /// SHA-256 (hex) of the device's credential secret, set when it first registered.
  std::optional<std::string> device_credential(const std::string& device);
  void set_device_credential(const std::string& device, const std::string& hash);

  /// Starts a new CVD for a device (after a provision): its snapshots from now on count
  /// as CVD number N (the first CVD, from registration, is 1). Returns N.
  int64_t start_cvd(const std::string& device, const std::string& reason);
  /// The CVDs started after the first: (number, started_at ns), in order.
  std::vector<std::pair<int64_t, int64_t>> cvds(const std::string& device);

  /// An app capture in progress on a reference device: the snapshot before the install.
  void set_capture(const std::string& device, const std::string& snapshot);
  std::optional<std::string> capture(const std::string& device);

 private:
  util::Db m_db;
  std::unique_ptr<util::Stmt> m_find_chunk;  ///< prepared once the schema exists
};

}  // namespace mirage::catalog
