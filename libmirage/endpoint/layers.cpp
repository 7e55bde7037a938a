#include "libmirage/endpoint/layers.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <chrono>
#include <unistd.h>

#include "libmirage/endpoint/revert.hpp"
#include "libmirage/materialize/metadata.hpp"
#include "libmirage/policy/upload_policy.hpp"
#include "libmirage/store/record.hpp"
#include "libmirage/util/sqlite.hpp"
#include "libmirage/util/error.hpp"
#include "libmirage/util/fd.hpp"
#include "libmirage/util/hex.hpp"
#include "libmirage/util/log.hpp"
#include "libmirage/util/spawn.hpp"

namespace mirage::endpoint {

namespace fs = std::filesystem;
using nlohmann::json;
using util::Digest;

tree::Entry snapshot_root(const json& snapshot) {
  return tree::decode_entry_hex(snapshot.at("root").get<std::string>(), "snapshot root");
}

namespace {

bool same(const tree::Entry& a, const tree::Entry& b) { return layer::same_content(a, b) && layer::same_metadata(a, b); }

}  // namespace

/// Merge-driver files of a flat tree, parsed, reading their content from the store.
std::map<std::string, layer::RecordSet> records_from_store(materialize::ObjectSource& source, const layer::Flat& flat) {
  std::map<std::string, layer::RecordSet> out;
  for (const auto& p : layer::merge_paths()) {
    auto it = flat.find(p);
    if (it == flat.end() || it->second.kind != tree::Kind::file) continue;
    out[p] = layer::parse_records(*layer::merge_format(p), layer::read_content(source, it->second, p), p);
  }
  return out;
}

/// Merge-driver files of an endpoint, parsed from disk (never through a symlink).
std::map<std::string, layer::RecordSet> records_from_disk(const fs::path& root) {
  std::map<std::string, layer::RecordSet> out;
  for (const auto& p : layer::merge_paths()) {
    fs::path file = root / p.substr(1);
    std::error_code ec;
    auto st = fs::symlink_status(file, ec);
    if (ec || !fs::is_regular_file(st)) continue;
    out[p] = layer::parse_records(*layer::merge_format(p), util::read_file(file), file.string());
  }
  return out;
}

layer::IdMap id_map_of(const json& given) {
  layer::IdMap m;
  if (given.contains("id_map")) from_json(given["id_map"], m);
  return m;
}

std::vector<std::string> refs_of(const json& j) {
  std::vector<std::string> out;
  if (j.contains("layers"))
    for (const auto& r : j["layers"]) out.push_back(r.get<std::string>());
  return out;
}

struct TreeCache::Impl {
  util::Db db;
  explicit Impl(const std::string& path) : db(path) {
    // A rowid table: trees are kilobytes, and a WITHOUT ROWID table keeps rows that large
    // in its index b-tree (a sync's 849 new trees cost 8,000 page writes). The table of
    // that first layout, if any, is dropped (a cache: its trees are fetched again).
    db.exec("DROP TABLE IF EXISTS trees; CREATE TABLE IF NOT EXISTS tree_objects(id BLOB PRIMARY KEY, data BLOB NOT NULL)");
  }
};

TreeCache::TreeCache(const fs::path& file) {
  try {
    std::error_code ec;
    if (fs::file_size(file, ec) > (512u << 20) && !ec) fs::remove(file);
    util::make_dirs(file.parent_path());
    m_impl = std::make_unique<Impl>(file.string());
  } catch (const Error& e) {
    util::warn("tree cache " + file.string() + " not used: " + e.what());
  }
}

TreeCache::~TreeCache() = default;

std::optional<std::vector<uint8_t>> TreeCache::get(const Digest& id) {
  if (!m_impl) return std::nullopt;
  util::Stmt s(m_impl->db, "SELECT data FROM tree_objects WHERE id = ?");
  s.bind_blob(1, id.bytes);
  if (!s.step()) return std::nullopt;
  return s.blob(0);
}

void TreeCache::put(const std::vector<std::pair<Digest, std::vector<uint8_t>>>& trees) {
  if (!m_impl || trees.empty()) return;
  try {
    util::Transaction tx(m_impl->db);
    util::Stmt s(m_impl->db, "INSERT OR IGNORE INTO tree_objects(id, data) VALUES (?, ?)");
    for (const auto& [id, data] : trees) {
      s.bind_blob(1, id.bytes).bind_blob(2, data);
      s.run();
      s.reset();
    }
    tx.commit();
  } catch (const Error& e) {
    util::warn(std::string("tree cache not updated: ") + e.what());
  }
}

std::vector<uint8_t> CachingSource::records(std::span<const Digest> ids) {
  std::vector<uint8_t> out;
  std::vector<Digest> missing;
  for (const auto& id : ids) {
    auto hit = m_cache.get(id);
    // A damaged cache entry is fetched again rather than trusted.
    if (hit && hit->size() <= store::k_max_chunk && util::sha256(*hit) == id)
      store::append_record(out, id, store::Codec::raw, static_cast<uint32_t>(hit->size()), *hit);
    else
      missing.push_back(id);
  }
  if (missing.empty()) return out;
  auto fetched = m_inner.records(missing);
  std::vector<std::pair<Digest, std::vector<uint8_t>>> keep;
  store::RecordReader reader(fetched, "trees");
  while (auto rec = reader.next()) keep.emplace_back(rec->id, store::open_record(*rec, "tree " + rec->id.hex()));
  m_cache.put(keep);
  out.insert(out.end(), fetched.begin(), fetched.end());
  return out;
}

json capture_begin(Client& client, const std::string& device) { return client.call("capture.begin", {{"device_id", device}}); }

json capture(Client& client, const CaptureOptions& o) {
  auto source = object_source(client, o.more_connections);
  auto sink = chunk_sink(client, "", o.more_connections, o.threads);
  auto scan_root = [&](const fs::path& root) {
    scan::ScanOptions so;
    so.root = root;
    so.threads = o.threads;
    so.progress = o.progress;
    auto r = scan::scan(so, *sink);
    for (const auto& w : r.stats.warnings) util::warn(w);
    r.root.subtree = r.tree;
    return r.root;
  };
  layer::Layer l;
  l.name = o.name;
  l.kind = o.kind;
  l.match = o.match;
  l.do_not_override = o.rules.do_not_override_rules();
  layer::Flat flat;
  json stats = json::object();
  if (o.kind != layer::LayerKind::app) {
    tree::Entry root = o.root.empty() ? snapshot_root(client::resolve_snapshot(client, o.from_device, "latest")) : scan_root(o.root);
    flat = layer::flatten(*source, root);
    uint64_t left_out = 0;
    std::erase_if(flat, [&](const auto& kv) {
      bool drop = kv.first != "/" && o.rules.excluded(kv.first);
      left_out += drop;
      return drop;
    });
    stats["left_out"] = left_out;
    if (o.kind == layer::LayerKind::base) {
      for (auto& [path, records] : records_from_store(*source, flat)) {
        layer::RecordDelta all;
        all.upsert = std::move(records);
        l.records[path] = all;
      }
    } else {
      for (const auto& p : layer::merge_paths()) flat.erase(p);  // drivers bring files, not accounts
    }
  } else {
    tree::Entry before, after;
    if (!o.from_device.empty()) {
      json cap = client.call("capture.get", {{"device_id", o.from_device}});
      before = snapshot_root(client::resolve_snapshot(client, o.from_device, cap["before"].get<std::string>()));
      json latest = client::resolve_snapshot(client, o.from_device, "latest");
      if (latest["snapshot_id"] == cap["before"])
        throw Error(ErrorKind::precondition, "device " + o.from_device +
                                                 ": no snapshot since 'app begin' (run mirage-centralize on it after the install)");
      after = snapshot_root(latest);
    } else {
      before = scan_root(o.before_root);
      after = scan_root(o.after_root);
    }
    auto fb = layer::flatten(*source, before), fa = layer::flatten(*source, after);
    flat["/"] = fa.at("/");
    uint64_t records_changed = 0;
    for (const auto& [p, a] : fa) {
      if (p == "/" || o.rules.noise(p)) continue;
      auto b = fb.find(p);
      if (auto format = layer::merge_format(p)) {
        if (a.kind != tree::Kind::file) continue;
        layer::RecordSet rb;
        if (b != fb.end() && b->second.kind == tree::Kind::file) {
          if (b->second.chunks == a.chunks) continue;
          rb = layer::parse_records(*format, layer::read_content(*source, b->second, p), p);
        }
        auto delta = layer::diff_records(rb, layer::parse_records(*format, layer::read_content(*source, a, p), p));
        if (delta.empty()) continue;
        records_changed += delta.upsert.size() + delta.remove.size();
        l.records[p] = delta;
        continue;
      }
      if (b != fb.end() && same(b->second, a)) continue;
      for (std::string q = p; q != "/" && !flat.count(q); q = tree::parent_path(q)) flat[q] = fa.at(q);
    }
    for (const auto& [p, b] : fb) {
      if (p == "/" || fa.count(p) || o.rules.noise(p) || layer::merge_format(p)) continue;
      if (fa.count(tree::parent_path(p))) l.whiteouts.push_back(p);
    }
    stats["records_changed"] = records_changed;
    l.captured_on = o.on_base;
    if (l.captured_on.empty() && !o.from_device.empty()) {
      json status = client.call("device.status", {{"device_id", o.from_device}});
      for (const auto& ref : refs_of(status["given"])) {
        json row = client.call("layer.get", {{"ref", ref}});
        if (row["kind"] == "base") l.captured_on = ref;
      }
    }
  }
  uint64_t files = 0, bytes = 0;
  for (const auto& [p, e] : flat)
    if (e.kind == tree::Kind::file) {
      files++;
      bytes += e.size;
    }
  l.root = layer::store_flat(std::move(flat), *sink);
  stats["files"] = files;
  stats["bytes"] = bytes;
  stats["whiteouts"] = l.whiteouts.size();
  json params = {{"name", o.name}, {"manifest", layer::manifest_json(l)}, {"stats", stats}};
  if (!o.from_device.empty()) params["device_id"] = o.from_device;
  json row = client.call("layer.commit", params);
  row["stats"] = stats;
  return row;
}

const LoadedLayer& LayerCache::get(const std::string& ref) {
  auto it = m_layers.find(ref);
  if (it != m_layers.end()) return it->second;
  json row = m_client.call("layer.get", {{"ref", ref}});
  m_manifest_bytes += row.dump().size();
  LoadedLayer loaded;
  layer::parse_manifest(row.at("manifest"), loaded.layer, "layer " + ref);
  loaded.layer.name = row.at("name").get<std::string>();
  loaded.layer.version = row.at("version").get<uint32_t>();
  loaded.flat = layer::flatten(m_source, loaded.layer.root);
  return m_layers.emplace(ref, std::move(loaded)).first->second;
}

layer::Image LayerCache::compose(const std::vector<std::string>& refs, const layer::IdMap& ids) {
  std::vector<std::pair<const layer::Layer*, const layer::Flat*>> parts;
  for (const auto& ref : refs) {
    const auto& l = get(ref);
    parts.emplace_back(&l.layer, &l.flat);
  }
  auto img = layer::compose(parts);
  layer::translate(img, ids);
  return img;
}

layer::PlanOptions plan_options(const json& spec) {
  layer::PlanOptions po;
  std::string type = spec.value("type", "assign");
  po.keep_local_changes = type == "assign";
  po.remove_user_apps = spec.value("remove_user_apps", false) || type == "provision";
  return po;
}

json dry_run(Client& client, const std::string& device, const json& spec, const json& given) {
  auto source = object_source(client, nullptr);
  LayerCache cache(client, *source);
  auto ids = id_map_of(given);
  auto o = cache.compose(refs_of(given), ids);
  auto n = cache.compose(refs_of(spec), ids);
  json snap = client::resolve_snapshot(client, device, "latest");
  auto e = layer::flatten(*source, snapshot_root(snap));
  auto options = plan_options(spec);
  options.report_kept = true;
  auto plan = layer::make_plan(o, n, e, records_from_store(*source, e), layer::LayerRules::defaults(), options);
  json j = layer::plan_json(plan, true);
  j["device_id"] = device;
  j["against_snapshot"] = snap["snapshot_id"];
  j["layers"] = spec["layers"];
  return j;
}

bool run_pending_hooks(const fs::path& root, const fs::path& state_dir, json* report) {
  fs::path marker = state_dir / "hooks.pending";
  if (!fs::exists(marker)) return true;
  auto results = layer::run_hooks(root);
  json list = json::array();
  bool ok = true;
  for (const auto& r : results) {
    list.push_back({{"hook", r.hook}, {"status", r.status}});
    if (r.status != 0) {
      ok = false;
      util::warn("post-layer hook " + r.hook + " failed (exit " + std::to_string(r.status) + "); it runs again on the next sync");
    }
  }
  if (report) *report = list;
  if (ok) fs::remove(marker);
  return ok;
}

layer::ApplyResult apply_plan(const layer::Plan& plan, const layer::Flat& e, materialize::ObjectSource& source,
                              const ApplyOrderOptions& opts) {
  layer::ApplyOptions ao;
  ao.root = opts.root;
  ao.journal = opts.state_dir / "apply.journal";
  ao.progress = opts.progress;
  ao.placeholder = opts.placeholder;
  if (opts.crash_point) {
    ao.before_stage = [hook = opts.crash_point](size_t i) { hook("apply_stage", i); };
    ao.before_step = [hook = opts.crash_point](size_t i) { hook("apply_step", i); };
  }
  auto result = layer::apply(plan, e, source, ao);
  for (const auto& w : result.warnings) util::warn(w);
  if (!result.installed.empty()) {
    // What the apply wrote has known chunks: the snapshot after it need not read it.
    fs::path cache_file = opts.state_dir / "files.cache";
    auto files = scan::FilesCache::load(cache_file);
    for (auto& [dir, file] : result.installed) files.set_file(dir, std::move(file));
    try {
      files.save(cache_file);
    } catch (const Error& err) {
      util::warn(std::string("files cache not updated: ") + err.what());
    }
  }
  return result;
}

json apply_order(Client& client, const json& next, const ApplyOrderOptions& opts) {
  const json& order = next.at("order");
  std::string order_id = order.at("order_id");
  try {
    auto start = std::chrono::steady_clock::now();
    json spec = order.at("spec");
    json given = next.value("given", json::object());
    auto source = object_source(client, opts.more_connections);
    TreeCache trees(opts.state_dir / "trees.db");
    CachingSource cached(*source, trees);
    LayerCache cache(client, cached);
    auto ids = id_map_of(given);
    auto o = cache.compose(refs_of(given), ids);
    auto n = cache.compose(refs_of(spec), ids);
    auto e = layer::flatten(cached, snapshot_root(opts.snapshot));
    auto plan = layer::make_plan(o, n, e, records_from_disk(opts.root), layer::LayerRules::defaults(), plan_options(spec));
    auto result = apply_plan(plan, e, *source, opts);
    for (const auto& [from, to] : plan.new_ids.uid) ids.uid[from] = to;
    for (const auto& [from, to] : plan.new_ids.gid) ids.gid[from] = to;
    util::AtomicFile(opts.state_dir / "hooks.pending").commit();
    json hooks;
    run_pending_hooks(opts.root, opts.state_dir, &hooks);
    json report = {{"plan", layer::plan_json(plan, false)}, {"apply", result}, {"id_map", ids}, {"hooks", hooks},
                   {"wire_bytes", source->bytes_received() + cache.manifest_bytes()},
                   {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()},
                   {"protected_by", opts.snapshot["snapshot_id"]}};
    client.call("order.report", {{"order_id", order_id}, {"device_id", opts.device_id}, {"state", "done"}, {"result", report}});
    report["order_id"] = order_id;
    report["layers"] = spec["layers"];
    return report;
  } catch (const Error& e) {
    report_failed(client, order_id, opts.device_id, e);  // unreachable: stays pending
    throw;
  }
}

json render(Client& client, const std::vector<std::string>& refs, const fs::path& to,
            std::function<void(uint64_t, uint64_t)> progress, ConnectionFactory more_connections) {
  if (refs.empty()) throw Error(ErrorKind::usage, "render: give --base (and any --app)");
  auto source = object_source(client, std::move(more_connections));
  LayerCache cache(client, *source);
  layer::Image empty;
  auto n = cache.compose(refs, {});
  util::make_dirs(to);
  std::error_code ec;
  if (!fs::is_empty(to, ec)) throw Error(ErrorKind::precondition, "render: " + to.string() + " is not empty");
  layer::Flat e;
  layer::PlanOptions po;
  po.keep_local_changes = false;
  auto plan = layer::make_plan(empty, n, e, {}, layer::LayerRules::defaults(), po);
  layer::ApplyOptions ao;
  ao.root = to;
  ao.journal = fs::temp_directory_path() / ("mirage-render-" + util::random_hex(6) + ".journal");
  ao.progress = std::move(progress);
  auto result = layer::apply(plan, e, *source, ao);
  auto root = n.entries.at("/");
  util::Fd fd = util::open_dir(to.string());
  std::vector<std::string> warnings;
  materialize::set_metadata_fd(fd.get(), root, to.string(),
                               [&](std::string m) { warnings.push_back(std::move(m)); });
  for (const auto& w : warnings) util::warn(w);
  json j = result;
  j["layers"] = n.layers;
  j["to"] = to.string();
  j["conflicts"] = n.conflicts;
  return j;
}

json render_tar(Client& client, const std::vector<std::string>& refs, std::function<void(uint64_t, uint64_t)> progress,
                ConnectionFactory more_connections) {
  const char* tmpdir = getenv("TMPDIR");
  std::string pattern = std::string(tmpdir && *tmpdir ? tmpdir : "/var/tmp") + "/mirage-render.XXXXXX";
  if (!::mkdtemp(pattern.data())) throw_errno("create a temporary directory in " + pattern);
  fs::path dir = pattern;
  struct Cleanup {
    fs::path dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{dir};
  json result = render(client, refs, dir, std::move(progress), std::move(more_connections));
  util::SpawnOptions so;
  so.argv = {"tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls", "-C", dir.string(), "-cf", "-", "."};
  int status = util::spawn(so).wait();
  if (status != 0) throw Error(ErrorKind::failed, "tar exited with status " + std::to_string(status));
  return result;
}

}  // namespace mirage::endpoint
