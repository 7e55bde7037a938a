#include "libmirage/endpoint/revert.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <unordered_set>

#include "libmirage/endpoint/centralize.hpp"
#include "libmirage/endpoint/stream_status.hpp"
#include "libmirage/layer/revert.hpp"
#include "libmirage/materialize/metadata.hpp"
#include "libmirage/materialize/stream.hpp"
#include "libmirage/util/clock.hpp"
#include "libmirage/util/error.hpp"
#include "libmirage/util/fd.hpp"
#include "libmirage/util/hex.hpp"
#include "libmirage/util/log.hpp"

namespace mirage::endpoint {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

tree::Entry root_of(const json& snapshot) {
  return tree::decode_entry_hex(snapshot.at("root").get<std::string>(), "snapshot root");
}

/// The device's snapshot `id` as snapshot.list gives it; Error(not_found) when it is gone.
json find_snapshot(Client& client, const std::string& device, const std::string& id) {
  json list = client.call("snapshot.list", {{"device_id", device}});
  for (const auto& s : list.at("snapshots"))
    if (s.value("snapshot_id", "") == id) return s;
  throw Error(ErrorKind::not_found, "snapshot " + id + " of device " + device + ": not found (forgotten since the order?)");
}

/// The root directory's metadata, which the apply leaves alone (its journal names paths
/// below the root): S's again when the scope has the machine area and it differs, or
/// when something changed directly in the root. Idempotent, so a crash before it is
/// mended by the rerun of the order.
void revert_root(const fs::path& root, const layer::Flat& s, const layer::Flat& e, const layer::Plan& plan,
                 layer::RevertScope scope) {
  if (scope == layer::RevertScope::user_data) return;
  const auto& want = s.at("/");
  bool in_root = false;
  for (const auto& op : plan.ops) in_root = in_root || (tree::parent_path(op.path) == "/" && op.path != "/");
  if (!in_root && layer::same_metadata(e.at("/"), want)) return;
  util::Fd fd = util::open_dir(root.string());
  materialize::set_metadata_fd(fd.get(), want, root.string(), [](const std::string& m) { util::warn(m); });
}

fs::path stream_journal(const ApplyOrderOptions& opts) { return opts.state_dir / "stream.json"; }

// Names are bytes (not always UTF-8, which JSON strings must be): hex in the journal.
std::string name_out(const std::string& name) {
  return util::to_hex(std::span(reinterpret_cast<const uint8_t*>(name.data()), name.size()));
}

/// For a streamed revert: which files of `plan` are staged as placeholders (outside the
/// minimal set, and needing a chunk that E does not hold: what E holds is copied now,
/// at disk speed), with stream.json naming them written before the apply starts.
std::function<bool(const std::string&, const tree::Entry&)> stream_placeholders(
    const json& spec, const layer::Plan& plan, const layer::Flat& e, const json& target, const ApplyOrderOptions& opts,
    const policy::UploadPolicy& policy) {
  auto here = std::make_shared<std::unordered_set<util::Digest, util::DigestHash>>();
  for (const auto& [path, entry] : e)
    if (entry.kind == tree::Kind::file)
      for (const auto& c : entry.chunks) here->insert(c.id);
  auto chosen = [here, &policy](const std::string& path, const tree::Entry& entry) {
    if (policy.restore_first(path)) return false;
    return std::any_of(entry.chunks.begin(), entry.chunks.end(), [&](const tree::ChunkRef& c) { return !here->count(c.id); });
  };
  json paths = json::array();  // a superset of the placeholders: the fill takes only those still marked
  for (const auto& op : plan.ops)
    if (op.entry.kind == tree::Kind::file && op.entry.size > 0 && chosen(op.path, op.entry)) paths.push_back(name_out(op.path));
  write_stream_status(revert_status_file(opts.state_dir),
                      {{"kind", "on-device"}, {"device_id", opts.device_id}, {"snapshot_id", target.at("snapshot_id")},
                       {"to", opts.root.string()}, {"pid", ::getpid()}, {"stage", "staging"},
                       {"started", util::rfc3339(util::now_ns())}});
  util::AtomicFile out(stream_journal(opts), 0600);
  out.write(json{{"snapshot_id", target.at("snapshot_id")},
                 {"root", target.at("root")},
                 {"bwlimit", spec.value("bwlimit", uint64_t(0))},
                 {"paths", paths}}
                .dump());
  out.commit();
  return chosen;
}

json carry_out(Client& client, const json& order, const ApplyOrderOptions& opts, const policy::UploadPolicy& policy) {
  auto start = std::chrono::steady_clock::now();
  const json& spec = order.at("spec");
  std::string snapshot_id = spec.at("snapshot_id");
  auto scope = layer::scope_from_name(spec.value("mode", "system"));
  json target = find_snapshot(client, opts.device_id, snapshot_id);
  auto source = object_source(client, opts.more_connections);
  TreeCache trees(opts.state_dir / "trees.db");
  CachingSource cached(*source, trees);
  auto s = layer::flatten(cached, root_of(target));
  auto e = layer::flatten(cached, root_of(opts.snapshot));
  auto plan = layer::make_revert_plan(s, e, scope, policy);
  ApplyOrderOptions ao = opts;
  bool stream = spec.value("stream", false) && opts.more_connections;
  if (stream) ao.placeholder = stream_placeholders(spec, plan, e, target, opts, policy);
  auto result = apply_plan(plan, e, *source, ao);
  revert_root(opts.root, s, e, plan, scope);
  return {{"snapshot_id", snapshot_id},
          {"mode", layer::scope_name(scope)},
          {"plan", layer::plan_json(plan, false)},
          {"apply", result},
          {"wire_bytes", source->bytes_received()},
          {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()},
          {"protected_by", opts.snapshot["snapshot_id"]},
          {"stream", stream}};
}

/// The file `path` below `root` when it is still the placeholder of `entry`: its
/// directory's fd (opened without following a symlink), its name and (dev, inode).
struct Marked {
  util::Fd dir;
  std::string name;
  std::pair<dev_t, ino_t> inode;
};
std::optional<Marked> still_placeholder(const fs::path& root, const std::string& path, const tree::Entry& entry) {
  try {
    util::Fd dir = util::open_dir(root.string());
    auto parts = tree::split_path(path);
    for (size_t i = 0; i + 1 < parts.size(); ++i) dir = util::open_dir_at(dir.get(), parts[i], path);
    util::Fd fd(::openat(dir.get(), parts.back().c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    struct stat st;
    if (!fd || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || uint64_t(st.st_size) != entry.size ||
        !materialize::is_placeholder(fd.get()))
      return std::nullopt;
    return Marked{std::move(dir), parts.back(), {st.st_dev, st.st_ino}};
  } catch (const Error&) {
    return std::nullopt;  // gone, or no longer a directory on the way: nothing to fill
  }
}

/// The fill's status file (stream_status.hpp), for `mirage-restore status` on the
/// device: written when the fill starts, at most once a second as it goes, and when it
/// ends. A status that cannot be written is a warning: the fill goes on.
class FillStatus {
 public:
  FillStatus(const ApplyOrderOptions& opts, const json& journal) : m_file(revert_status_file(opts.state_dir)) {
    std::string now = util::rfc3339(util::now_ns());
    m_doc = {{"kind", "on-device"}, {"device_id", opts.device_id}, {"snapshot_id", journal.at("snapshot_id")},
             {"to", opts.root.string()}, {"pid", ::getpid()}, {"stage", "filling"}, {"started", now}, {"usable", now}};
    std::error_code ec;
    if (!fs::exists(m_file, ec)) return;
    json old = read_stream_status(m_file);  // a fill taken up again keeps when it started and was usable
    for (const char* key : {"started", "usable"})
      if (old.value("snapshot_id", "") == m_doc["snapshot_id"] && old.contains(key) && old[key].is_string())
        m_doc[key] = old[key];
  }
  void start(const materialize::Streamer& streamer) {
    std::lock_guard lock(m_mutex);
    m_doc["on_demand"] = streamer.on_demand();
    if (!streamer.on_demand()) m_doc["on_demand_why_not"] = streamer.why_not();
    m_doc["progress"] = streamer.progress();
    write();
  }
  void progress(const materialize::StreamProgress& p) {
    std::lock_guard lock(m_mutex);
    if (std::chrono::steady_clock::now() - m_last < std::chrono::seconds(1)) return;
    m_doc["progress"] = p;
    write();
  }
  void finish(const char* stage, const materialize::StreamProgress& p, const std::string& error = "") {
    std::lock_guard lock(m_mutex);
    m_doc["stage"] = stage;
    m_doc["progress"] = p;
    m_doc["finished"] = util::rfc3339(util::now_ns());
    if (!error.empty()) m_doc["error"] = error;
    write();
  }
  /// Nothing was left to fill: a status from before says so (none is made).
  void nothing_left() {
    std::error_code ec;
    if (!fs::exists(m_file, ec)) return;
    json old = read_stream_status(m_file);
    materialize::StreamProgress p;
    if (old.contains("progress")) {
      p.files_done = p.files_total = old["progress"].value("files_total", uint64_t(0));
      p.bytes_done = p.bytes_total = old["progress"].value("bytes_total", uint64_t(0));
    }
    finish("done", p);
  }

 private:
  void write() {
    m_last = std::chrono::steady_clock::now();
    try {
      write_stream_status(m_file, m_doc);
    } catch (const Error& e) {
      util::warn(std::string("the fill's status not written: ") + e.what());
    }
  }
  fs::path m_file;
  json m_doc;
  std::mutex m_mutex;
  std::chrono::steady_clock::time_point m_last{};
};

}  // namespace

void report_failed(Client& client, const std::string& order_id, const std::string& device, const Error& e) {
  try {
    client.call("order.report", {{"order_id", order_id},
                                 {"device_id", device},
                                 {"state", "failed"},
                                 {"result", {{"error", e.what()}, {"exit", static_cast<int>(e.kind())}}}});
  } catch (const Error&) {
  }
}

json revert_order(Client& client, const json& next, const ApplyOrderOptions& opts, const policy::UploadPolicy& policy,
                  const std::function<void()>& carried_out) {
  const json& order = next.at("order");
  std::string order_id = order.at("order_id");
  try {
    json report = carry_out(client, order, opts, policy);
    if (carried_out) carried_out();
    client.call("order.report", {{"order_id", order_id}, {"device_id", opts.device_id}, {"state", "done"}, {"result", report}});
    report["order_id"] = order_id;
    return report;
  } catch (const Error& e) {
    report_failed(client, order_id, opts.device_id, e);
    throw;
  }
}

json fill_streamed(Client& client, const ApplyOrderOptions& opts, const policy::UploadPolicy& policy) {
  fs::path file = stream_journal(opts);
  std::error_code ec;
  if (!fs::exists(file, ec)) return nullptr;
  json j;
  try {
    j = json::parse(util::read_file(file));
  } catch (const json::exception& e) {
    throw Error(ErrorKind::integrity, "stream journal " + file.string() + ": " + e.what());
  }
  if (!opts.more_connections) throw Error(ErrorKind::usage, "filling placeholders needs connections of their own to the server");
  auto start = std::chrono::steady_clock::now();
  auto source = object_source(client, nullptr);
  TreeCache trees(opts.state_dir / "trees.db");
  CachingSource cached(*source, trees);
  auto s = layer::flatten(cached, root_of(j));
  materialize::Streamer::Options so;
  so.to = opts.root;
  so.source = [more = opts.more_connections] { return own_source(more()); };
  so.rank = [&policy](const std::string& path, const tree::Entry&) { return policy.in_user_area(path) ? 0 : 1; };
  so.bytes_per_second = j.value("bwlimit", uint64_t(0));
  FillStatus status(opts, j);
  so.progress = [&status](const materialize::StreamProgress& p) { status.progress(p); };
  materialize::Streamer streamer(std::move(so));
  std::set<std::pair<dev_t, ino_t>> seen;  // a hardlink group's placeholder is filled once
  materialize::RestoreStats stats;
  for (const auto& hex : j.at("paths")) {
    auto bytes = util::from_hex(hex.get<std::string>());
    if (!bytes) throw Error(ErrorKind::integrity, "stream journal " + file.string() + ": a name is not hex");
    auto it = s.find(*bytes);
    if (it == s.end() || it->second.kind != tree::Kind::file) continue;
    auto marked = still_placeholder(opts.root, *bytes, it->second);
    if (!marked || !seen.insert(marked->inode).second) continue;
    streamer.add(marked->dir.get(), marked->name, *bytes, it->second);
    stats.placeholders++;
  }
  if (stats.placeholders == 0) {  // filled, or the apply rolled back: nothing to do or report
    status.nothing_left();
    fs::remove(file);
    return {{"fill", materialize::StreamProgress{}}};
  }
  json snap = {{"device_id", opts.device_id}, {"snapshot_id", j.at("snapshot_id")}};
  auto report = [&](const std::string& stage, const materialize::StreamProgress& p) {
    try {  // the transaction log; the fill is not failed for it
      stats.bytes = p.bytes_done;
      stats.files = p.files_done;
      stats.wire_bytes = p.wire_bytes;
      report_restore(client, snap, {"/"}, opts.root, stats, stage, p.files_total - p.files_done, p.bytes_total - p.bytes_done);
    } catch (const std::exception& e) {
      util::warn(std::string("restore not logged: ") + e.what());
    }
  };
  util::log(util::LogLevel::info, std::to_string(stats.placeholders) + " placeholders of the revert to fill" +
                                      (streamer.on_demand() ? " (a program that reads one waits for it)"
                                                            : "; " + streamer.why_not() + ": a program that reads one before it is filled sees zeros"));
  report("usable", streamer.progress());
  status.start(streamer);
  if (opts.crash_point) opts.crash_point("stream_fill", 0);
  materialize::StreamProgress p;
  try {
    p = streamer.fill();
  } catch (const std::exception& e) {
    status.finish("failed", streamer.progress(), e.what());
    throw;
  }
  for (const auto& w : streamer.warnings()) util::warn(w);
  status.finish("done", p);
  report("done", p);
  fs::remove(file);
  json out = {{"fill", p}, {"on_demand", streamer.on_demand()}};
  if (!streamer.on_demand()) out["on_demand_why_not"] = streamer.why_not();
  out["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

json revert_dry_run(Client& client, const json& snapshot, const std::string& mode) {
  auto scope = layer::scope_from_name(mode);
  std::string device = snapshot.at("device_id");
  auto policy = policy::UploadPolicy::from_json(client.call("policy.get", {{"device_id", device}})["policy"]);
  json latest = client::resolve_snapshot(client, device, "latest");
  auto source = object_source(client, nullptr);
  auto s = layer::flatten(*source, root_of(snapshot));
  auto e = layer::flatten(*source, root_of(latest));
  json j = layer::plan_json(layer::make_revert_plan(s, e, scope, policy), true);
  j["device_id"] = device;
  j["snapshot_id"] = snapshot["snapshot_id"];
  j["against_snapshot"] = latest["snapshot_id"];
  j["mode"] = layer::scope_name(scope);
  return j;
}

}  // namespace mirage::endpoint
