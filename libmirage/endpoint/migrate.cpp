#include "libmirage/endpoint/migrate.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>

#include "libmirage/endpoint/revert.hpp"
#include "libmirage/materialize/metadata.hpp"
#include "libmirage/migrate/packages.hpp"
#include "libmirage/migrate/plan.hpp"
#include "libmirage/util/clock.hpp"
#include "libmirage/util/error.hpp"
#include "libmirage/util/fd.hpp"
#include "libmirage/util/log.hpp"
#include "libmirage/util/spawn.hpp"
#include "libmirage/util/text.hpp"

namespace mirage::endpoint {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

fs::path state_file(const fs::path& state_dir) { return state_dir / "migration.json"; }
fs::path retention_file(const fs::path& state_dir) { return state_dir / "old-roots.json"; }

json load_json(const fs::path& file, json fallback) {
  std::error_code ec;
  if (!fs::exists(file, ec)) return fallback;
  return json::parse(util::read_file(file));
}

void save_json(const fs::path& file, const json& j) {
  util::AtomicFile f(file, 0600);
  f.write(j.dump(1));
  f.commit();
}

void warn_skip(const std::string& what, int err) {
  util::warn("old-root: " + what + ": " + std::strerror(err) + " (not kept)");
}

/// Step 2: the old system area linked under ROOT/old-root/<id>/ (see migrate.hpp).
/// Idempotent: what is there already is left as it is.
json link_old_root(const fs::path& root, const std::string& id, const layer::Flat& e, const migrate::MigrationPlan& mp,
                   const migrate::Rules& rules, const layer::LayerRules& layer_rules, const util::CrashHook& crash) {
  fs::path top = root / "old-root" / id;
  fs::create_directories(top);
  fs::permissions(root / "old-root", fs::perms::owner_all);
  std::set<std::string> copy;  // metadata-only changes would reach the old-root through a link
  for (const auto& op : mp.plan.ops)
    if (op.action == layer::Action::metadata) copy.insert(op.path);
  uint64_t files = 0, dirs = 0, bytes = 0;
  std::vector<std::pair<std::string, const tree::Entry*>> made_dirs;
  for (const auto& [p, entry] : e) {
    if (!migrate::goes_to_old_root(rules, layer_rules, p)) continue;
    if (crash) crash("migrate_link", files + dirs);
    fs::path src = root / p.substr(1), dst = top / p.substr(1);
    std::error_code ec;
    fs::create_directories(dst.parent_path(), ec);
    if (entry.kind == tree::Kind::dir) {
      if (::mkdir(dst.c_str(), 0700) != 0 && errno != EEXIST) throw_errno("old-root: mkdir " + dst.string());
      made_dirs.emplace_back(p, &entry);
      dirs++;
      continue;
    }
    if (copy.count(p) && entry.kind == tree::Kind::file) {
      if (!fs::exists(fs::symlink_status(dst, ec))) {
        fs::copy_file(src, dst, ec);
        if (ec) {
          warn_skip(src.string(), ec.value());
          continue;
        }
        util::Fd dir = util::open_dir(dst.parent_path().string());
        materialize::set_metadata(dir.get(), dst.filename().string(), entry, dst.string(), util::warn);
      }
    } else if (::linkat(AT_FDCWD, src.c_str(), AT_FDCWD, dst.c_str(), 0) != 0 && errno != EEXIST) {
      if (errno == ENOENT) {
        warn_skip(src.string(), errno);  // gone since the snapshot
        continue;
      }
      throw_errno("old-root: link " + src.string() + " to " + dst.string());
    }
    files++;
    if (entry.kind == tree::Kind::file) bytes += entry.size;
  }
  for (auto it = made_dirs.rbegin(); it != made_dirs.rend(); ++it) {  // deepest first: times stay
    fs::path dst = top / it->first.substr(1);
    util::Fd dir = util::open_dir(dst.parent_path().string());
    materialize::set_metadata(dir.get(), dst.filename().string(), *it->second, dst.string(), util::warn);
  }
  return {{"path", "/old-root/" + id}, {"files", files}, {"dirs", dirs}, {"bytes", bytes}};
}

/// What the order composes: the rules, the old and new images, the plan.
struct Composed {
  migrate::Rules rules;
  layer::LayerRules layer_rules = layer::LayerRules::defaults();
  layer::IdMap ids;
  layer::Image o, n;
  layer::Flat e;
  migrate::MigrationPlan mp;
};

/// The packages apt marked automatic on the endpoint (never read through a symlink).
std::set<std::string> auto_installed_on_disk(const fs::path& root) {
  fs::path file = root / (migrate::k_extended_states + 1);
  std::error_code ec;
  if (!fs::is_regular_file(fs::symlink_status(file, ec))) return {};
  return migrate::auto_installed(util::read_file(file));
}

Composed compose(LayerCache& cache, materialize::ObjectSource& trees, const json& spec, const json& given,
                 const tree::Entry& e_root, const std::map<std::string, layer::RecordSet>& e_records,
                 const std::set<std::string>& e_auto_installed) {
  Composed c{spec.value("rules", json()).is_null() ? migrate::Rules::defaults() : migrate::Rules::from_json(spec["rules"]),
             layer::LayerRules::defaults(), {}, {}, {}, {}, {}};
  c.ids = id_map_of(given);
  c.o = cache.compose(spec.value("from_layers", std::vector<std::string>{}), c.ids);
  c.n = cache.compose(refs_of(spec), c.ids);
  c.e = layer::flatten(trees, e_root);
  c.mp = migrate::make_migration_plan(c.o, c.n, c.e, e_records, e_auto_installed, c.rules, c.layer_rules);
  return c;
}

json packages_json(const std::vector<layer::PackageChange>& list) {
  json out = json::array();
  for (const auto& c : list) {
    json j = {{"package", c.package}, {"change", c.change}};
    if (!c.from.empty()) j["from"] = c.from;
    if (!c.to.empty()) j["to"] = c.to;
    if (c.change == "reinstall") j["note"] = "installed by the user: installed again from the new release by apt";
    out.push_back(j);
  }
  return out;
}

/// Programs the migration runs on the endpoint: in a chroot of ROOT unless ROOT is "/".
util::SpawnOptions on_endpoint(const fs::path& root) {
  util::SpawnOptions so;
  so.env = {{"PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}};
  std::error_code ec;
  if (!fs::equivalent(root, "/", ec)) so.chroot = root;
  return so;
}

/// Runs apt-get with `args` on the endpoint (on_endpoint), its output on stderr;
/// returns its exit status and, when it could not run, why.
std::pair<int, std::string> apt_get(const fs::path& root, std::vector<std::string> args) {
  util::SpawnOptions so = on_endpoint(root);
  // Conffiles the migration carried (cron.d, ...) are kept without a prompt.
  so.argv = {"/usr/bin/apt-get", "-q", "-y", "-o", "Dpkg::Options::=--force-confdef", "-o",
             "Dpkg::Options::=--force-confold"};
  so.argv.insert(so.argv.end(), args.begin(), args.end());
  so.env.emplace_back("DEBIAN_FRONTEND", "noninteractive");
  so.out = util::SpawnOptions::Stream::to_stderr;
  auto child = util::spawn(so);
  int status = child.wait();
  if (child.exec_error()) return {status, std::string("apt-get could not be run: ") + std::strerror(child.exec_error())};
  return {status, ""};
}

/// Step 4b: the packages the user installed on top of the old base, installed again
/// from the new release's apt sources (the migrated sources.list: bookworm's suites are
/// trixie's there). Each one that cannot be is reported with the reason.
json reinstall_packages(const fs::path& root, const json& changes) {
  std::vector<std::string> names;
  for (const auto& c : changes)
    if (c.value("change", "") == "reinstall") names.push_back(c["package"].get<std::string>());
  json out = json::array();
  if (names.empty()) return out;
  auto [update, why] = apt_get(root, {"update"});
  for (const auto& name : names) {
    if (update != 0) {
      out.push_back({{"package", name}, {"installed", false},
                     {"reason", why.empty() ? "apt-get update failed (exit " + std::to_string(update) + ")" : why}});
      continue;
    }
    auto [status, reason] = apt_get(root, {"install", "--no-install-recommends", name});
    json r = {{"package", name}, {"installed", status == 0}};
    if (status != 0)
      r["reason"] = !reason.empty() ? reason
                    : status == 100 ? "no installable candidate in the new release's apt sources (apt-get exit 100)"
                                    : "apt-get install failed (exit " + std::to_string(status) + ")";
    out.push_back(r);
  }
  return out;
}

/// The sudoers.d files the migration carried from the endpoint: the ones sudo reads
/// (a name with a dot or ending in '~' it skips) that a component claims.
std::vector<std::string> carried_sudoers(const Composed& c) {
  const std::string dir = "/etc/sudoers.d/";
  std::vector<std::string> out;
  for (auto it = c.e.lower_bound(dir); it != c.e.end() && it->first.starts_with(dir); ++it) {
    std::string_view name = std::string_view(it->first).substr(dir.size());
    if (it->second.kind != tree::Kind::file || name.find_first_of("/.") != std::string_view::npos || name.ends_with("~"))
      continue;
    if (c.rules.explain(it->first).outcome == migrate::Outcome::carried) out.push_back(it->first);
  }
  return out;
}

/// The migrated system's visudo (its path inside the system), "" when it has none.
std::string visudo_of(const fs::path& root) {
  for (const char* p : {"/usr/sbin/visudo", "/sbin/visudo"}) {
    std::error_code ec;
    if (fs::exists(fs::symlink_status(root / (p + 1), ec))) return p;
  }
  return "";
}

/// What a pipe of a child gives until its end: the first `limit` bytes, the rest read
/// and dropped (visudo says a line or two on each of its two pipes, read one after
/// the other).
std::string read_all(const util::Fd& fd, const std::string& what, size_t limit = 65536) {
  std::string out(limit, '\0');
  out.resize(util::read_full(fd.get(), {reinterpret_cast<uint8_t*>(out.data()), out.size()}, what));
  uint8_t rest[4096];
  if (out.size() == limit)
    while (util::read_full(fd.get(), rest, what) == sizeof rest) {
    }
  return out;
}

/// Step 4a: each carried sudoers.d file checked by `visudo -c -f FILE` on the endpoint
/// (on_endpoint); one it rejects is renamed PATH.mirage-local (sudo reads no name with a
/// dot) and reported with visudo's message. Without a visudo nothing is checked, and
/// the result says so in "warning".
json check_sudoers(const fs::path& root, const std::vector<std::string>& files) {
  json out = {{"checked", json::array()}, {"disabled", json::array()}};
  std::string visudo = visudo_of(root);
  if (visudo.empty()) {
    if (!files.empty())
      out["warning"] = "the migrated system has no visudo: " + std::to_string(files.size()) +
                       " carried /etc/sudoers.d files not checked";
    return out;
  }
  for (const auto& f : files) {
    fs::path on_disk = root / f.substr(1);
    std::error_code ec;
    if (!fs::is_regular_file(fs::symlink_status(on_disk, ec))) continue;  // renamed by an interrupted run
    util::SpawnOptions so = on_endpoint(root);
    so.argv = {visudo, "-c", "-f", f};
    so.out = so.err = util::SpawnOptions::Stream::pipe;
    auto child = util::spawn(so);
    std::string said = read_all(child.err, visudo + "'s errors"), told = read_all(child.out, visudo + "'s output");
    int status = child.wait();
    if (child.exec_error()) {
      out["warning"] = visudo + " could not be run: " + std::strerror(child.exec_error());
      return out;
    }
    out["checked"].push_back(f);
    if (status == 0) continue;
    std::string message = util::trim(said.empty() ? told : said);
    fs::rename(on_disk, on_disk.string() + ".mirage-local", ec);
    if (ec) throw Error(ErrorKind::failed, "sudoers: rename " + f + " rejected by visudo (" + message + "): " + ec.message());
    out["disabled"].push_back(
        {{"path", f}, {"renamed_to", f + ".mirage-local"}, {"visudo_exit", status}, {"message", message}});
  }
  return out;
}

/// Records the sudoers check in the state file and warns of what it disabled.
void sudoers_checked(const ApplyOrderOptions& opts, json& st, json result, bool after_packages) {
  result["after_packages"] = after_packages;
  for (const auto& d : result["disabled"])
    util::warn("sudoers: " + d["path"].get<std::string>() + " rejected by visudo, renamed " +
               d["renamed_to"].get<std::string>() + ": " + d["message"].get<std::string>());
  if (result.contains("warning")) util::warn("sudoers: " + result["warning"].get<std::string>());
  st["sudoers"] = std::move(result);
  save_json(state_file(opts.state_dir), st);
}

void record_retention(const fs::path& state_dir, const std::string& id, const json& old_root, int keep_days) {
  json all = load_json(retention_file(state_dir), json::object());
  all[id] = {{"created_at", util::now_ns()}, {"keep_days", keep_days}, {"bytes", old_root["bytes"]}};
  save_json(retention_file(state_dir), all);
}

json seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

/// Steps 1-4 (migrate.hpp), each phase recorded in the state file before the next.
json carry_out(Client& client, const json& next, const ApplyOrderOptions& opts) {
  auto start = std::chrono::steady_clock::now();
  const json& order = next.at("order");
  const json& spec = order.at("spec");
  std::string id = spec.at("migration_id"), order_id = order.at("order_id");
  json st = load_json(state_file(opts.state_dir), json::object());
  if (st.value("order_id", "") != order_id) {
    // The first run's snapshot is the one that protects the state before the migration
    // (a rerun's may hold a partial /old-root or the migrated system): rollback's target.
    st = {{"migration_id", id}, {"order_id", order_id}, {"phase", "protected"},
          {"protected_by", opts.snapshot.value("snapshot_id", "")}};
    save_json(state_file(opts.state_dir), st);
  }
  json steps = json::array();
  steps.push_back({{"step", "protected"}, {"snapshot_id", st["protected_by"]}, {"bytes_moved", 0}});
  auto source = object_source(client, opts.more_connections);
  TreeCache tree_cache(opts.state_dir / "trees.db");
  CachingSource cached(*source, tree_cache);
  LayerCache cache(client, cached);
  auto c = compose(cache, cached, spec, next.value("given", json::object()), snapshot_root(opts.snapshot),
                   records_from_disk(opts.root), auto_installed_on_disk(opts.root));
  uint64_t tree_bytes = source->bytes_received() + cache.manifest_bytes();
  steps.push_back({{"step", "images"}, {"bytes_moved", tree_bytes}, {"seconds", seconds_since(start)}});
  std::string phase = st["phase"];
  if (phase == "protected") {
    auto t = std::chrono::steady_clock::now();
    st["old_root"] = link_old_root(opts.root, id, c.e, c.mp, c.rules, c.layer_rules, opts.crash_point);
    st["old_root"]["keep_days"] = spec.value("keep_old_root_days", 10);
    st["old_root_seconds"] = seconds_since(t);
    record_retention(opts.state_dir, id, st["old_root"], spec.value("keep_old_root_days", 10));
    st["phase"] = phase = "linked";
    save_json(state_file(opts.state_dir), st);
  }
  steps.push_back({{"step", "old_root"}, {"bytes_moved", 0}, {"seconds", st.value("old_root_seconds", 0.0)}});
  steps.back().update(st["old_root"]);
  if (phase == "linked" || phase == "applying") {
    // What the plan found before the apply (a rerun after it plans against the new system).
    st["plan"] = layer::plan_json(c.mp.plan, false);
    st["removed_identity"] = c.mp.removed_identity;
    st["dangling_enablement"] = c.mp.dangling_enablement;
    st["package_changes"] = packages_json(c.mp.packages);
    st["phase"] = "applying";
    save_json(state_file(opts.state_dir), st);
    auto t = std::chrono::steady_clock::now();
    uint64_t before = source->bytes_received();
    st["apply"] = apply_plan(c.mp.plan, c.e, *source, opts);
    st["apply_bytes"] = source->bytes_received() - before;
    st["apply_seconds"] = seconds_since(t);
    st["phase"] = phase = "applied";
    save_json(state_file(opts.state_dir), st);
  }
  steps.push_back({{"step", "applied"}, {"bytes_moved", st.value("apply_bytes", uint64_t(0))},
                   {"seconds", st.value("apply_seconds", 0.0)}, {"apply", st.value("apply", json::object())}});
  // The carried sudo rules checked before apt runs, by the new release's visudo; where
  // it has none (sudo is the user's, installed again by the packages step), after.
  auto sudoers = carried_sudoers(c);
  auto sudoers_step = [&] {
    steps.push_back({{"step", "sudoers"}, {"bytes_moved", 0}});
    steps.back().update(st["sudoers"]);
  };
  if (!st.contains("sudoers") && !visudo_of(opts.root).empty())
    sudoers_checked(opts, st, check_sudoers(opts.root, sudoers), false);
  if (st.contains("sudoers") && !st["sudoers"]["after_packages"].get<bool>()) sudoers_step();
  if (!st.contains("packages")) {
    auto t = std::chrono::steady_clock::now();
    st["packages"] = reinstall_packages(opts.root, st["package_changes"]);
    st["packages_seconds"] = seconds_since(t);
    save_json(state_file(opts.state_dir), st);
  }
  steps.push_back({{"step", "packages"}, {"bytes_moved", 0}, {"seconds", st["packages_seconds"]},
                   {"reinstalled", st["packages"]}});
  if (!st.contains("sudoers")) sudoers_checked(opts, st, check_sudoers(opts.root, sudoers), true);
  if (st["sudoers"]["after_packages"].get<bool>()) sudoers_step();
  for (const auto& p : st["packages"])
    if (!p["installed"].get<bool>())
      util::warn("package " + p["package"].get<std::string>() + " not reinstalled: " + p["reason"].get<std::string>());
  json hooks = json::array();
  for (const auto& h : layer::run_hooks(opts.root, "/etc/mirage/post-migration.d")) {
    hooks.push_back({{"hook", h.hook}, {"status", h.status}});
    if (h.status != 0) util::warn("post-migration hook " + h.hook + " failed (exit " + std::to_string(h.status) + ")");
  }
  steps.push_back({{"step", "hooks"}, {"bytes_moved", 0}, {"hooks", hooks}});
  auto ids = c.ids;
  for (const auto& [from, to] : c.mp.plan.new_ids.uid) ids.uid[from] = to;
  for (const auto& [from, to] : c.mp.plan.new_ids.gid) ids.gid[from] = to;
  return {{"migration_id", id},
          {"base", spec.value("base", "")},
          {"from_layers", spec.value("from_layers", json::array())},
          {"plan", st["plan"]},
          {"removed_identity", st["removed_identity"]},
          {"dangling_enablement", st.value("dangling_enablement", json::array())},
          {"packages", st["package_changes"]},
          {"reinstalled", st["packages"]},
          {"sudoers", st["sudoers"]},
          {"recapture", spec.value("recapture", json::array())},
          {"old_root", st["old_root"]},
          {"apply", st.value("apply", json::object())},
          {"hooks", hooks},
          {"id_map", ids},
          {"steps", steps},
          {"wire_bytes", source->bytes_received() + cache.manifest_bytes()},
          {"seconds", seconds_since(start)},
          {"protected_by", st["protected_by"]}};
}

}  // namespace

json migrate_order(Client& client, const json& next, const ApplyOrderOptions& opts) {
  std::string order_id = next.at("order").at("order_id");
  try {
    json report = carry_out(client, next, opts);
    client.call("order.report", {{"order_id", order_id}, {"device_id", opts.device_id}, {"state", "done"}, {"result", report}});
    fs::remove(state_file(opts.state_dir));
    report["order_id"] = order_id;
    return report;
  } catch (const Error& e) {
    report_failed(client, order_id, opts.device_id, e);
    throw;
  }
}

void migration_recovered(const fs::path& state_dir, const std::string& recovered) {
  json st = load_json(state_file(state_dir), json());
  if (st.is_null() || st.value("phase", "") != "applying" || recovered == "none") return;
  st["phase"] = recovered == "resumed" ? "applied" : "linked";
  save_json(state_file(state_dir), st);
}

namespace {

/// What /old-root/<id> holds, measured before its removal begins (a rerun after a crash
/// reports these, not what a half removal left): {files (entries but directories),
/// bytes (their file sizes), bytes_freed (those of the files whose every link is in it:
/// the space the removal gives back)}. Nothing there: zeros.
json measure_old_root(const fs::path& top) {
  uint64_t files = 0, bytes = 0, freed = 0;
  std::map<std::pair<dev_t, ino_t>, nlink_t> seen;  // links of a file with several
  std::error_code none, ec;
  if (fs::is_directory(fs::symlink_status(top, none)))
    for (fs::recursive_directory_iterator it(top, ec), end; !ec && it != end; it.increment(ec)) {
      struct stat st;
      if (::lstat(it->path().c_str(), &st) != 0 || S_ISDIR(st.st_mode)) continue;
      files++;
      if (!S_ISREG(st.st_mode)) continue;
      bytes += uint64_t(st.st_size);
      if (st.st_nlink == 1 || ++seen[{st.st_dev, st.st_ino}] == st.st_nlink) freed += uint64_t(st.st_size);
    }
  if (ec) throw fs::filesystem_error("old-root: measuring", top, ec);
  return {{"files", files}, {"bytes", bytes}, {"bytes_freed", freed}};
}

/// Removes `p` and what is under it, deepest first (symlinks are removed, not followed);
/// crash("old_root_remove", n) before the n-th entry goes. Gone already: nothing to do.
void remove_tree(const fs::path& p, const util::CrashHook& crash, size_t& n) {
  std::error_code ec;
  auto st = fs::symlink_status(p, ec);
  if (!fs::exists(st)) return;
  if (fs::is_directory(st)) {
    std::vector<fs::path> children;
    for (const auto& d : fs::directory_iterator(p)) children.push_back(d.path());
    for (const auto& c : children) remove_tree(c, crash, n);
  }
  if (crash) crash("old_root_remove", n);
  n++;
  if (!fs::remove(p, ec) && ec && ec != std::errc::no_such_file_or_directory)
    throw fs::filesystem_error("old-root: remove", p, ec);
}

bool valid_migration_id(const std::string& id) {
  return !id.empty() && id.find_first_not_of("0123456789abcdef") == std::string::npos;
}

/// Marks /old-root/<id> in the retention state for removal (measured first; once). A
/// rollback's figures are those measured before its revert (whose commit removes the
/// tree: it was not in the snapshot the revert goes back to).
void mark_removal(const fs::path& root, json& all, const std::string& id, const std::string& reason) {
  if (all.contains(id) && all[id].contains("removing")) return;
  json m = reason == "rollback" && all.contains(id) && all[id].contains("measured") ? all[id]["measured"]
                                                                                      : measure_old_root(root / "old-root" / id);
  m["reason"] = reason;
  all[id]["removing"] = std::move(m);
  all[id].erase("measured");
}

}  // namespace

void old_root_before_rollback(const fs::path& root, const fs::path& state_dir, const std::string& migration_id) {
  if (!valid_migration_id(migration_id)) return;
  json all = load_json(retention_file(state_dir), json::object());
  if (!all.contains(migration_id) || all[migration_id].contains("removing") || all[migration_id].contains("measured"))
    return;
  try {
    all[migration_id]["measured"] = measure_old_root(root / "old-root" / migration_id);
    save_json(retention_file(state_dir), all);
  } catch (const std::exception& e) {  // reported as measured when it goes
    util::warn("/old-root/" + migration_id + " not measured before its rollback: " + e.what());
  }
}

void old_root_rolled_back(const fs::path& root, const fs::path& state_dir, const std::string& migration_id) {
  if (!valid_migration_id(migration_id)) return;
  json all = load_json(retention_file(state_dir), json::object());
  std::error_code ec;
  if (!all.contains(migration_id) && !fs::exists(fs::symlink_status(root / "old-root" / migration_id, ec))) return;
  if (all.contains(migration_id) && all[migration_id].contains("removing")) return;
  try {
    mark_removal(root, all, migration_id, "rollback");
    save_json(retention_file(state_dir), all);
  } catch (const std::exception& e) {  // the rollback is done; its retention removes it later
    util::warn("/old-root/" + migration_id + " not marked for removal: " + e.what());
  }
}

json expire_old_roots(const fs::path& root, const fs::path& state_dir, std::chrono::system_clock::time_point now,
                      const OldRootReport& report, const util::CrashHook& crash, const std::string& keep) {
  json all = load_json(retention_file(state_dir), json::object()), removed = json::array();
  int64_t now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
  std::vector<std::string> due;
  for (const auto& [id, r] : all.items()) {
    int64_t until = r.value("created_at", int64_t(0)) + int64_t(r.value("keep_days", 10)) * 86400 * 1'000'000'000LL;
    if (r.contains("removing") || (now_ns >= until && id != keep)) due.push_back(id);
  }
  for (const auto& id : due) {
    // Measured and marked, removed, reported, forgotten: a crash between any two, then
    // a rerun, goes on from the mark (the server records the removal once).
    try {
      if (!valid_migration_id(id)) throw Error(ErrorKind::integrity, "not a migration id");
      if (!all[id].contains("removing")) {
        mark_removal(root, all, id, "retention");
        save_json(retention_file(state_dir), all);
      }
      size_t n = 0;
      remove_tree(root / "old-root" / id, crash, n);
      json done = all[id]["removing"];
      done["migration_id"] = id;
      if (report) report(done);
      if (crash) crash("old_root_reported", 0);
      all.erase(id);
      save_json(retention_file(state_dir), all);
      removed.push_back(std::move(done));
    } catch (const std::exception& e) {  // kept, and tried again by the next sync
      util::warn("/old-root/" + id + " not removed or not reported: " + e.what());
    }
  }
  return removed;
}

json migrate_dry_run(Client& client, const std::string& device, const json& spec, const json& given) {
  auto source = object_source(client, nullptr);
  LayerCache cache(client, *source);
  json snap = client::resolve_snapshot(client, device, "latest");
  auto e_root = snapshot_root(snap);
  auto e = layer::flatten(*source, e_root);
  std::set<std::string> marked;
  if (auto it = e.find(migrate::k_extended_states); it != e.end() && it->second.kind == tree::Kind::file)
    marked = migrate::auto_installed(layer::read_content(*source, it->second, migrate::k_extended_states));
  auto c = compose(cache, *source, spec, given, e_root, records_from_store(*source, e), marked);
  json j = layer::plan_json(c.mp.plan, false);
  j["device_id"] = device;
  j["against_snapshot"] = snap["snapshot_id"];
  j["base"] = spec.value("base", "");
  j["paths"] = c.mp.decisions;
  j["packages"] = packages_json(c.mp.packages);
  j["removed_identity"] = c.mp.removed_identity;
  j["dangling_enablement"] = c.mp.dangling_enablement;
  j["recapture"] = spec.value("recapture", json::array());
  return j;
}

}  // namespace mirage::endpoint
