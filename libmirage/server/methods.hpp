#pragma once
// The methods the server answers, as typed functions: each takes its params struct
// (parsed by Params, within server::Limits) and returns its reply (anything with a
// to_json). registry.cpp gives each its row (roles, audit, concurrency, body limit);
// the files beside this one implement them over plain domain operations (orders.cpp:
// composing an order; snapshots.cpp: a commit's check).
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "libmirage/catalog/catalog.hpp"
#include "libmirage/server/kinds.hpp"
#include "libmirage/server/params.hpp"
#include "libmirage/server/service.hpp"
#include "libmirage/store/repository.hpp"
#include "libmirage/store/stats.hpp"

namespace mirage::server {

/// What a method runs with: the request's repository (its own catalog connection),
/// the caller, the service's limits, the request's binary part and the reply's.
struct Context {
  Service& service;
  store::Repository& repo;
  const Caller& caller;
  const std::vector<uint8_t>& binary;
  std::vector<uint8_t>& reply_binary;
  /// The device the call touched when its params do not name it (snapshot.forget), for
  /// its audit event.
  std::string device = {};
  catalog::Catalog& cat() { return repo.catalog(); }
  const Limits& limits() const { return service.limits(); }
  /// The caller's name for events: the token's ("local" over stdio).
  const std::string& by() const { return caller.name; }
};

// ---- domain operations shared by the method files -------------------------------

/// A name people give (a device's, a collection's, a policy's, a token's): 1-100 of
/// letters, digits, '-', '_' and '.', not starting with '-' (nothing that could split a
/// log line or a table, or be taken for a flag).
bool valid_name(const std::string& name);
/// The device, when accepted; Error(not_found) unknown, (permission) rejected,
/// (precondition) pending.
catalog::Device accepted_device(catalog::Catalog& cat, const std::string& id);
/// A registered device; Error(not_found) otherwise.
catalog::Device registered_device(catalog::Catalog& cat, const std::string& id);
/// What a replaced device's calls get: Error(permission) naming the device that took
/// over its CVD.
Error replaced_error(const catalog::Device& d);
struct DeviceRegister;
/// Records (or refreshes) the waiting re-enrolment of an accepted device whose id a
/// machine without its credential registered, or counts that machine as contending
/// with the one already waiting; returns the Error(precondition, reason "reenroll")
/// the caller throws once its transaction is committed.
Error request_reenrolment(catalog::Catalog& cat, const DeviceRegister& p);
/// The devices `targets` names: its device ids and the members of its collections,
/// each once, in order; Error(usage) when there are none, Error(precondition) when the
/// collections given have no members, Error(not_found) for an unknown collection.
std::vector<std::string> target_devices(catalog::Catalog& cat, const Targets& targets);
/// A collection's members now (a dynamic one matches accepted devices);
/// Error(not_found) for an unknown collection.
std::vector<std::string> collection_members(catalog::Catalog& cat, const std::string& name);
/// The stored layer NAME@VERSION (NAME: the newest); Error(not_found) otherwise.
catalog::LayerRow resolve_layer(catalog::Catalog& cat, const std::string& ref);
/// The newest version of each driver layer whose match fits the device's inventory.
std::vector<catalog::LayerRow> matching_drivers(catalog::Catalog& cat, const catalog::Device& d);
/// Checks that every object the tree `tree` reaches is stored, skipping what equals
/// `previous` (already checked); Error(precondition, reason "incomplete") otherwise.
void verify_closure(store::Repository& repo, const util::Digest& tree, const std::optional<util::Digest>& previous,
                    const std::string& what);
/// True for a device id (or policy name): letters, digits, - _ . :, at most 128.
bool valid_device_id(const std::string& id);
/// `text` cut to `max` bytes with anything but printable ASCII as '?', for messages
/// that quote what a client sent.
std::string printable(const std::string& text, size_t max);
/// Makes a bearer token, stores its SHA-256 under `name` and `role`, and returns the
/// secret (shown once). `expires_at`: ns since the epoch, 0 never.
std::string issue_token(catalog::Catalog& cat, const std::string& name, Role role, int64_t expires_at = 0);

// ---- server.info, tokens (tokens.cpp) --------------------------------------------

struct ServerInfo {
  Role role;
  std::optional<std::string> data;  ///< admins only
};
void to_json(nlohmann::json& j, const ServerInfo& r);
ServerInfo server_info(Context& c, const NoParams&);

struct TokenCreate {
  std::string name;
  Role role;
  double expires_seconds;  ///< 0: never
  static TokenCreate parse(const Params& p);
};
struct TokenRotate {
  std::string name;
  double expires_seconds;
  static TokenRotate parse(const Params& p);
};
struct TokenName {
  std::string name;
  static TokenName parse(const Params& p) { return {p.text("name")}; }
};
struct TokenReply {
  std::string name;
  Role role;
  std::string token;  ///< the secret, shown once
  int64_t expires;    ///< ns since the epoch, 0: never
};
void to_json(nlohmann::json& j, const TokenReply& r);
TokenReply token_create(Context& c, const TokenCreate& p);
TokenReply token_rotate(Context& c, const TokenRotate& p);
struct Tokens {
  std::vector<nlohmann::json> tokens;  ///< Catalog::tokens()'s rows: never a secret
};
void to_json(nlohmann::json& j, const Tokens& r);
Tokens token_list(Context& c, const NoParams&);
struct TokenRevoked {
  std::string name;
};
void to_json(nlohmann::json& j, const TokenRevoked& r);
TokenRevoked token_revoke(Context& c, const TokenName& p);

// ---- devices (devices.cpp) ------------------------------------------------------

struct DeviceRegister {
  std::string device_id;
  std::string hostname;
  nlohmann::json inventory;     ///< an object within Limits::inventory
  std::string credential_hash;  ///< 64 hex digits, or "" for none
  static DeviceRegister parse(const Params& p);
};
catalog::Device device_register(Context& c, const DeviceRegister& p);

struct DeviceId {
  std::string device_id;
  static DeviceId parse(const Params& p) { return {p.text("device_id")}; }
};
struct DeviceDelete {
  std::string device_id;
  bool force;  ///< also when it has pinned snapshots
  static DeviceDelete parse(const Params& p) { return {p.text("device_id"), p.flag("force")}; }
};
struct DeviceDeleted {
  std::string device_id;
  uint64_t snapshots;  ///< deleted with it
  uint64_t pinned;     ///< of them, pinned
};
void to_json(nlohmann::json& j, const DeviceDeleted& r);
/// Forgets a device with its CVD (snapshots, orders, credential); GC then frees the
/// data no other snapshot or layer holds. Pinned snapshots need `force`.
DeviceDeleted device_delete(Context& c, const DeviceDelete& p);

struct DeviceRename {
  std::string device_id;
  std::string name;  ///< "" clears it
  static DeviceRename parse(const Params& p);
};
struct DeviceRenamed {
  std::string device_id;
  std::string name, previous;
};
void to_json(nlohmann::json& j, const DeviceRenamed& r);
DeviceRenamed device_rename(Context& c, const DeviceRename& p);

struct DeviceList {
  std::optional<catalog::DeviceState> state;
  bool reenroll = false;  ///< only accepted devices whose re-enrolment waits (state "reenroll")
  std::optional<std::string> hostname;  ///< only devices with this hostname (ASCII case-insensitive)
  std::optional<std::string> name;      ///< only the device of this name (device rename; unique)
  std::optional<int64_t> stale_ns;  ///< only devices not synced for this long (or never)
  static DeviceList parse(const Params& p);
};
struct Devices {
  std::vector<catalog::Device> devices;
  std::map<std::string, catalog::DeviceActivity> activity;
  int64_t now;  ///< what the ages count from (ns)
  std::map<std::string, catalog::Reenrolment> reenrolments = {};
};
void to_json(nlohmann::json& j, const Devices& r);
Devices device_list(Context& c, const DeviceList& p);

struct DeviceDecision {  ///< device.accept, device.reject
  std::string device_id;
  bool reference;
  std::optional<std::string> policy;
  static DeviceDecision parse(const Params& p) { return {p.text("device_id"), p.flag("reference"), p.optional_text("policy")}; }
};
catalog::Device device_accept(Context& c, const DeviceDecision& p);
catalog::Device device_reject(Context& c, const DeviceDecision& p);

struct DeviceStatus {
  catalog::Device device;
  nlohmann::json given;
  std::vector<catalog::Order> pending;
  std::optional<catalog::Order> last;
  int64_t cvd;
};
void to_json(nlohmann::json& j, const DeviceStatus& r);
DeviceStatus device_status(Context& c, const DeviceId& p);

struct DeviceTag {
  std::string device_id;
  std::vector<std::string> add, remove;
  static DeviceTag parse(const Params& p) { return {p.text("device_id"), p.texts("add"), p.texts("remove")}; }
};
catalog::Device device_tag(Context& c, const DeviceTag& p);

/// The fingerprint a machine and an admin compare before a re-enrolment: the first 16
/// hex digits of its credential's SHA-256.
std::string credential_fingerprint(const std::string& hash);

struct DeviceReenroll {  ///< device.reenroll
  std::string device_id;
  std::optional<std::string> fingerprint;  ///< the waiting machine's, as it printed it
  bool reject = false;                     ///< drop the waiting registration instead
  static DeviceReenroll parse(const Params& p);
};
struct DeviceReenrolled {
  catalog::Device device;
  std::string fingerprint;
  bool rejected;
  bool revoked;  ///< an earlier credential was on file and is no longer valid
};
void to_json(nlohmann::json& j, const DeviceReenrolled& r);
/// Gives an accepted device's id to the machine that registered it without the
/// credential (its new secret becomes the device's; the old one is revoked) or drops
/// that registration (reject). Error(precondition) when none waits, when the
/// fingerprint differs, or when another machine contested the id and no fingerprint
/// was given.
DeviceReenrolled device_reenroll(Context& c, const DeviceReenroll& p);

struct DeviceReplace {  ///< device.replace
  std::string device_id;    ///< NEW: registered, not yet holding snapshots of its own
  std::string from_device;  ///< OLD: accepted, with a CVD
  std::optional<std::string> mode;  ///< full or user-data: also queue NEW's revert to the CVD's newest
  static DeviceReplace parse(const Params& p);
};
struct DeviceReplaced {
  catalog::Device device;  ///< NEW, as it is now
  std::string from_device;
  uint64_t snapshots;         ///< moved to NEW
  std::string latest;         ///< the CVD's newest snapshot id
  uint64_t orders_cancelled;  ///< OLD's pending orders, ended
  bool already;               ///< OLD was already replaced by NEW: nothing moved now
  std::vector<catalog::Order> orders = {};  ///< queued for NEW (with a mode)
};
void to_json(nlohmann::json& j, const DeviceReplaced& r);
/// NEW takes over OLD's CVD: its snapshots, CVD history, layer assignment, policy and
/// volume continue under NEW, NEW is accepted, and OLD is marked replaced (its
/// credential then gets Error(permission)). Error(usage) for NEW == OLD,
/// Error(precondition) for an OLD already replaced by another, a NEW with snapshots
/// of its own or rejected, an OLD without snapshots.
DeviceReplaced device_replace(Context& c, const DeviceReplace& p);

// ---- chunks and snapshots (chunks.cpp, snapshots.cpp) ---------------------------

/// chunks.missing, .get, .delta: how many ids (pairs) the request named; for
/// chunks.missing also how many of them the server lacks (one byte each in the binary part).
struct ChunkCount {
  uint64_t count;
  std::optional<uint64_t> missing;
};
void to_json(nlohmann::json& j, const ChunkCount& r);
ChunkCount chunks_missing(Context& c, const NoParams&);
struct ChunksPut {
  std::optional<std::string> device_id;  ///< an endpoint's upload; none: a capture's
  static ChunksPut parse(const Params& p) { return {p.optional_text("device_id")}; }
};
struct ChunksPutReply {
  uint64_t chunks, new_chunks, stored_bytes, raw_bytes;
};
void to_json(nlohmann::json& j, const ChunksPutReply& r);
ChunksPutReply chunks_put(Context& c, const ChunksPut& p);
ChunkCount chunks_get(Context& c, const NoParams&);
ChunkCount chunks_delta(Context& c, const NoParams&);

struct SnapshotCommit {
  std::string device_id;
  util::Digest tree;
  std::vector<uint8_t> root;  ///< the encoded root entry, describing `tree`
  nlohmann::json stats;       ///< an object within Limits::stats
  bool pinned;
  static SnapshotCommit parse(const Params& p);
};
struct SnapshotCommitted {
  catalog::Snapshot snapshot;
  std::vector<std::string> expired;  ///< ids of the snapshots no retention tier keeps any more, deleted
};
void to_json(nlohmann::json& j, const SnapshotCommitted& r);
SnapshotCommitted snapshot_commit(Context& c, const SnapshotCommit& p);
struct ListedSnapshot {
  catalog::Snapshot snapshot;
  std::vector<std::string> kept_by;  ///< the retention tiers that keep it
  int64_t cvd;                       ///< the CVD it belongs to (a provision starts the next)
};
struct Snapshots {
  std::string device_id;
  std::vector<ListedSnapshot> snapshots;  ///< oldest first
};
void to_json(nlohmann::json& j, const Snapshots& r);
Snapshots snapshot_list(Context& c, const DeviceId& p);
struct SnapshotForget {
  std::string snapshot_id;
  bool force;  ///< also a pinned one
  static SnapshotForget parse(const Params& p) { return {p.text("snapshot_id"), p.flag("force")}; }
};
struct SnapshotForgotten {
  std::string snapshot_id;
  std::string device_id;
  bool pinned;
};
void to_json(nlohmann::json& j, const SnapshotForgotten& r);
/// Forgets one snapshot (GC then frees what only it held); a pinned one needs `force`,
/// the one an app capture started from is refused.
SnapshotForgotten snapshot_forget(Context& c, const SnapshotForget& p);
struct SnapshotRequest {
  Targets targets;
  std::string reason;
  static SnapshotRequest parse(const Params& p) { return {Targets::parse(p), p.text_or("reason", "requested")}; }
};
struct OrdersReply {
  std::vector<catalog::Order> orders;
  std::optional<std::vector<std::string>> warnings;  ///< order.create's (an app captured on another base)
};
OrdersReply snapshot_request(Context& c, const SnapshotRequest& p);

// ---- orders (orders.cpp) --------------------------------------------------------

struct OrderCreate {
  Targets targets;
  OrderKind type;                       ///< assign, enforce or provision
  std::string base;                     ///< NAME[@VERSION]: the new base ("" keeps it)
  std::vector<std::string> apps;        ///< app layers to add (replacing a same-named one)
  std::vector<std::string> remove_apps; ///< app layer names to drop
  bool remove_apps_given;
  bool remove_user_apps;                ///< always for provision
  bool dry_run;                         ///< compose, report, store nothing
  static OrderCreate parse(const Params& p);
};
void to_json(nlohmann::json& j, const OrdersReply& r);
/// Composes one order per target device (what it will have once its pending orders
/// are done, changed as `p` says), superseding their pending layer orders, in `cat`'s
/// open transaction; returns them with warnings (an app captured on another base).
OrdersReply compose_orders(catalog::Catalog& cat, const OrderCreate& p, const std::string& by);
OrdersReply order_create(Context& c, const OrderCreate& p);

struct OrderNext {
  std::string device_id;
  nlohmann::json given;
  nlohmann::json inventory;
  std::optional<catalog::Order> order;  ///< the oldest pending
};
void to_json(nlohmann::json& j, const OrderNext& r);
OrderNext order_next(Context& c, const DeviceId& p);
struct OrderId {
  std::string order_id;
  static OrderId parse(const Params& p) { return {p.text("order_id")}; }
};
catalog::Order order_get(Context& c, const OrderId& p);
struct OrderReport {
  std::string order_id;
  std::string device_id;
  OrderState state;  ///< done or failed
  nlohmann::json result;
  static OrderReport parse(const Params& p);
};
catalog::Order order_report(Context& c, const OrderReport& p);
struct PendingOrders {
  std::string device_id;
  uint64_t pending;
};

/// order.revert: {"device", "snapshot", "mode"}. `snapshot` is a snapshot id of the
/// device or "latest" (its newest); `mode` system (default), full or user-data.
struct OrderRevert {
  std::string device;
  std::string snapshot;
  RevertMode mode;
  std::string migration_id;  ///< a migration's rollback (migrate.rollback): named in the spec
  bool stream = false;       ///< the minimal set first, placeholders filled after (spec "stream"); mode full only
  uint64_t bwlimit = 0;      ///< with stream: the fill's bytes a second (spec "bwlimit"; 0: none)
  static OrderRevert parse(const Params& p);
};
/// Queues a revert of `p.device` to one of its snapshots in `cat`'s open transaction:
/// its spec names the snapshot, the mode and, for system and full, the layers the
/// device had been given at that snapshot ("given", "layers"; absent when the snapshot
/// predates that record: the device keeps what it has). A newer pending revert
/// supersedes an older one; layer orders stay queued (they run first). Error(not_found)
/// for an unknown snapshot or one of another device, the device errors of
/// accepted_device.
catalog::Order compose_revert(catalog::Catalog& cat, const OrderRevert& p, const std::string& by);
OrdersReply order_revert(Context& c, const OrderRevert& p);
void to_json(nlohmann::json& j, const PendingOrders& r);
PendingOrders order_pending(Context& c, const DeviceId& p);

// ---- layers and captures (layers.cpp) -------------------------------------------

struct LayerCommit {
  std::string name;
  nlohmann::json manifest;  ///< layer/image.hpp's, checked by parse_manifest
  std::string device_id;    ///< where it was captured, for the event ("" unknown)
  nlohmann::json stats;
  static LayerCommit parse(const Params& p);
};
/// One layer version as layer.commit, layer.list and layer.get show it.
struct LayerInfo {
  catalog::LayerRow row;
  bool with_manifest;  ///< layer.get: the whole manifest too
};
void to_json(nlohmann::json& j, const LayerInfo& r);
LayerInfo layer_commit(Context& c, const LayerCommit& p);
struct LayerList {
  std::string name;  ///< "" all
  static LayerList parse(const Params& p) { return {p.text_or("name")}; }
};
struct Layers {
  std::vector<LayerInfo> layers;
};
void to_json(nlohmann::json& j, const Layers& r);
Layers layer_list(Context& c, const LayerList& p);
struct LayerGet {
  std::string ref;
  static LayerGet parse(const Params& p) { return {p.text("ref")}; }
};
LayerInfo layer_get(Context& c, const LayerGet& p);
struct LayerDelete {
  std::string name;
  uint32_t version;
  static LayerDelete parse(const Params& p);
};
struct LayerDeleted {
  std::string layer;  ///< NAME@VERSION
};
void to_json(nlohmann::json& j, const LayerDeleted& r);
/// Forgets a layer version; Error(precondition) naming the devices while a device has
/// it or a pending order names it.
LayerDeleted layer_delete(Context& c, const LayerDelete& p);
struct Capture {
  std::string device_id;
  std::string before;  ///< the snapshot the capture started from
};
void to_json(nlohmann::json& j, const Capture& r);
Capture capture_begin(Context& c, const DeviceId& p);
Capture capture_get(Context& c, const DeviceId& p);

// ---- OS migration (migrate.cpp) --------------------------------------------------

/// migrate.check: {"device_ids", "collections", "base"?}: the migration preflight of
/// each device's latest snapshot (migrate/preflight.hpp) against the base layer
/// NAME[@VER] when given; each report is stored as the device's latest.
struct MigrateCheck {
  Targets targets;
  std::string base;  ///< "" when not given
  static MigrateCheck parse(const Params& p);
};
/// {"base", "devices": [{device_id, hostname, snapshot_id, checked_at, inhibited,
/// findings, counts} or {device_id, hostname, error: {kind, message}}], "summary":
/// {devices, inhibited, clean, errors, codes: {code: devices}}}.
struct MigrateCheckReply {
  std::string base;
  nlohmann::json devices = nlohmann::json::array();
  nlohmann::json summary = nlohmann::json::object();
};
void to_json(nlohmann::json& j, const MigrateCheckReply& r);
MigrateCheckReply migrate_check(Context& c, const MigrateCheck& p);
/// migrate.reports: {"device_ids", "collections"}: the reports the last checks stored,
/// in migrate.check's reply ("base" null); a device never checked has an error (not_found).
MigrateCheckReply migrate_reports(Context& c, const Targets& p);

/// migrate.start: {"device_ids", "collections", "base", "rules"?, "keep_old_root_days"?,
/// "force"?, "dry_run"?}: queues a migration order per device (OrderKind::migrate): its
/// spec names the new base and the drivers matching the device ("layers"), the layers it
/// has now ("from_layers"), the app layers to recapture ("recapture": captured on the old
/// base, not carried over), the rules (null: the shipped default), the migration id and
/// how long /old-root/<id> is kept (2-60 days, default 10). The preflight runs first: a
/// device with an inhibitor is refused (Error(precondition)) unless `force`. A dry run
/// composes the orders and stores nothing.
struct MigrateStart {
  Targets targets;
  std::string base;
  nlohmann::json rules;  ///< null: the default
  int keep_old_root_days = 10;
  bool force = false;
  bool dry_run = false;
  static MigrateStart parse(const Params& p);
};
OrdersReply migrate_start(Context& c, const MigrateStart& p);
/// migrate.rollback: {"device"}: queues the rollback of the device's latest migration: a
/// revert (mode system) to the snapshot that protected the state before it, its spec
/// naming the migration ("migration_id"). Error(not_found) when the device has no
/// finished migration, Error(precondition) when it was rolled back already.
OrdersReply migrate_rollback(Context& c, const DeviceId& p);

// ---- fleet: policies, collections, volumes, events, GC, check (fleet.cpp) --------

struct PolicyGet {
  std::string name;
  std::optional<std::string> device_id;  ///< that device's policy, instead of `name`
  static PolicyGet parse(const Params& p) { return {p.text_or("name", "default"), p.optional_text("device_id")}; }
};
struct PolicyReply {
  std::string name;
  nlohmann::json policy;  ///< the upload policy document, defaults filled in
};
void to_json(nlohmann::json& j, const PolicyReply& r);
PolicyReply policy_get(Context& c, const PolicyGet& p);
struct PolicySet {
  std::string name;
  nlohmann::json policy;
  static PolicySet parse(const Params& p);
};
PolicyReply policy_set(Context& c, const PolicySet& p);
struct PolicyUse {
  std::string name;
  uint64_t devices;  ///< devices that have it
  bool stored;       ///< false for the built-in default never set
};
struct Policies {
  std::vector<PolicyUse> policies;
};
void to_json(nlohmann::json& j, const Policies& r);
Policies policy_list(Context& c, const NoParams&);
struct PolicyAssign {
  std::string name;
  Targets targets;
  static PolicyAssign parse(const Params& p) { return {p.text("name"), Targets::parse(p)}; }
};
struct PolicyAssigned {
  std::string name;
  std::vector<std::string> devices;
};
void to_json(nlohmann::json& j, const PolicyAssigned& r);
PolicyAssigned policy_assign(Context& c, const PolicyAssign& p);

struct CollectionSet {
  std::string name;
  bool replace;                         ///< an existing collection is replaced, not refused
  std::optional<nlohmann::json> match;  ///< dynamic
  std::vector<std::string> device_ids;  ///< static
  static CollectionSet parse(const Params& p);
};
struct CollectionReply {
  std::string name;
  std::string kind;     ///< static or dynamic
  nlohmann::json spec;  ///< {"devices": [...]} or {"match": {...}}
  std::vector<std::string> members;
};
void to_json(nlohmann::json& j, const CollectionReply& r);
CollectionReply collection_set(Context& c, const CollectionSet& p);
struct CollectionName {
  std::string name;
  static CollectionName parse(const Params& p) { return {p.text("name")}; }
};
CollectionReply collection_get(Context& c, const CollectionName& p);
struct CollectionSummary {
  std::string name;
  std::string kind;  ///< static or dynamic
  uint64_t members;  ///< now
};
struct Collections {
  std::vector<CollectionSummary> collections;
};
void to_json(nlohmann::json& j, const Collections& r);
Collections collection_list(Context& c, const NoParams&);
struct CollectionDeleted {
  std::string name;
};
void to_json(nlohmann::json& j, const CollectionDeleted& r);
CollectionDeleted collection_delete(Context& c, const CollectionName& p);

struct VolumeUse {
  int64_t volume_id;
  std::string path;
  bool read_only;
  uint64_t free_bytes;  ///< 0 when the volume cannot tell
  uint64_t packs, pack_bytes, devices;
};
struct Volumes {
  std::vector<VolumeUse> volumes;
};
void to_json(nlohmann::json& j, const Volumes& r);
Volumes volume_list(Context& c, const NoParams&);
struct VolumeAdd {
  std::string path;
  bool create;  ///< make a missing directory (else Error(not_found))
  static VolumeAdd parse(const Params& p);
};
struct VolumeAdded {
  int64_t volume_id;
  std::string path;
  uint64_t free_bytes;
};
void to_json(nlohmann::json& j, const VolumeAdded& r);
VolumeAdded volume_add(Context& c, const VolumeAdd& p);
struct VolumeSet {
  int64_t volume_id;
  bool read_only;
  static VolumeSet parse(const Params& p);
};
struct VolumeState {
  int64_t volume_id;
  std::string path;
  bool read_only;
};
void to_json(nlohmann::json& j, const VolumeState& r);
VolumeState volume_set(Context& c, const VolumeSet& p);

struct GcRun {
  store::GcOptions options;
  static GcRun parse(const Params& p);
};
GcRan gc_run(Context& c, const GcRun& p);

struct EventsList {
  std::string device_id;  ///< "" all
  int64_t since;          ///< ns since the epoch, 0: from the start
  int64_t after_id;
  std::string type;       ///< "" all
  static EventsList parse(const Params& p);
};
struct Events {
  std::vector<nlohmann::json> events;  ///< Catalog::events()'s, in id order
};
void to_json(nlohmann::json& j, const Events& r);
Events events_list(Context& c, const EventsList& p);
/// A restore event names at most this many paths (a client restoring more sends the
/// first ones and their count); each path and the target at most k_max_report_path bytes.
constexpr size_t k_max_report_paths = 64, k_max_report_path = 4096;
/// An OS migration's /old-root/<id> removed by its endpoint (its retention passed, or a
/// rollback): what it held, measured before the removal began. Event
/// migrate.old_root_removed, recorded once per device and migration id (a rerun after a
/// crash may report it again).
struct OldRootRemoved {
  std::string migration_id;
  std::string reason;  ///< retention | rollback
  uint64_t bytes = 0, bytes_freed = 0, files = 0;  ///< file bytes, those whose last link went, entries
};
struct EventsReport {
  std::string type = "restore";  ///< restore | old_root_removed (then only `old_root` is read)
  OldRootRemoved old_root;
  std::string device_id;
  std::string snapshot_id;
  uint64_t bytes_moved = 0, unique_bytes = 0, files = 0;
  std::vector<std::string> paths;  ///< the snapshot paths restored (bounded: see above)
  uint64_t paths_total = 0;        ///< how many were restored in all
  std::string to, host;            ///< the target directory, and the machine it is on
  /// A streaming restore reports twice: "usable" (the minimal set and the placeholders
  /// are in place; files_left and bytes_left still to fill) and "done". Event
  /// restore.<stage>.
  std::string stage = "done";
  uint64_t files_left = 0, bytes_left = 0;
  static EventsReport parse(const Params& p);
};
struct RestoreDone {  ///< the event's detail, as recorded
  std::string snapshot_id;
  uint64_t bytes_moved, unique_bytes, files;
  std::string by;
  std::vector<std::string> paths;
  uint64_t paths_total;
  std::string to, host;
  std::string stage;
  uint64_t files_left, bytes_left;
};
void to_json(nlohmann::json& j, const RestoreDone& r);
/// The event's detail as recorded: a RestoreDone, or {"transaction": "old_root_removed",
/// migration_id, reason, bytes, bytes_freed, files, bytes_moved: 0, by, "recorded"} where
/// recorded is false when that removal was reported already (nothing added).
nlohmann::json events_report(Context& c, const EventsReport& p);

struct StoreStats {
  std::optional<std::string> device_id;  ///< that device only; none: every device and the store
  static StoreStats parse(const Params& p) { return {p.optional_text("device_id")}; }
};
/// {"devices": [{"device_id", UsageStats...}], "store": UsageStats (without device_id), plus
/// "index": {"chunks", "pack_bytes"} (everything stored, layers and garbage not yet collected too)}.
struct StoreUsage {
  std::vector<std::pair<std::string, store::UsageStats>> devices;
  std::optional<store::UsageStats> store;  ///< all devices (not when one was asked for)
  uint64_t index_chunks = 0, index_pack_bytes = 0;
};
void to_json(nlohmann::json& j, const StoreUsage& r);
StoreUsage store_stats(Context& c, const StoreStats& p);

struct Check {
  bool repair, read_data;
  static Check parse(const Params& p) { return {p.flag("repair"), p.flag("read_data")}; }
};
/// The check's report, with "repair" when it repaired first.
struct Checked {
  store::CheckReport check;
  std::optional<store::RepairReport> repair;
};
void to_json(nlohmann::json& j, const Checked& r);
Checked check(Context& c, const Check& p);

}  // namespace mirage::server
