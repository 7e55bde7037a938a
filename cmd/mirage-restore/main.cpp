// mirage-restore: list a device's snapshots; browse them (ls, find, diff, dump); restore
// files or subtrees from one; mount them read-only (mount.cpp).
#include <unistd.h>

#include <iostream>
#include <sstream>

#include "cmd/common/tool.hpp"
#include "cmd/mirage-restore/mount.hpp"
#include "libmirage/browse/browse.hpp"
#include "libmirage/endpoint/centralize.hpp"
#include "libmirage/util/clock.hpp"
#include "libmirage/util/error.hpp"
#include "libmirage/util/log.hpp"

using namespace mirage;
using nlohmann::json;

namespace {

struct Options {
  std::string device;
  std::string snapshot = "latest";
  std::vector<std::string> paths;
  std::string to;
  std::string overwrite = "always";
  std::string archive;  ///< dump: tar or zip ("" : a file raw, a directory as tar)
  bool recursive = false, long_format = false, all = false;
  std::vector<std::string> patterns, find_snapshots;
  std::string newer, older;
  std::vector<std::string> diff_args;  ///< S1 S2 [PATH]
  std::string path;                    ///< ls, dump: one path
};

void need_device(const Options& o) {
  if (o.device.empty()) throw Error(ErrorKind::usage, "--device is required");
}

/// A snapshot as the browse functions take it, from client::resolve_snapshot's JSON.
browse::SnapshotRef snapshot_ref(const json& s) {
  return {s.at("snapshot_id").get<std::string>(), s.at("time_ns").get<int64_t>(),
          tree::decode_entry_hex(s.at("root").get<std::string>(), "snapshot " + s.at("snapshot_id").get<std::string>())};
}

/// A path or name for a terminal: control bytes as \ooo (a newline in a name must not
/// start a new row).
std::string shown(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\%03o", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

/// Rows under a header (the first row), drawn as every list is.
void print_table(std::ostream& out, const std::vector<std::vector<std::string>>& rows) {
  tool::Table t(std::vector<tool::Column>(rows.front().begin(), rows.front().end()));
  for (size_t i = 1; i < rows.size(); ++i) t.row(rows[i]);
  t.print(out);
}

std::string size_cell(const tree::Entry& e) { return e.kind == tree::Kind::dir ? "-" : tool::human_bytes(e.size); }

std::string name_cell(const std::string& path, const tree::Entry& e) {
  return shown(path) + (e.kind == tree::Kind::symlink ? " -> " + shown(e.target) : "");
}

int ls(const tool::Common& common, const Options& o) {
  need_device(o);
  auto client = tool::connect(common);
  auto snap = snapshot_ref(client::resolve_snapshot(client, o.device, o.snapshot));
  auto source = endpoint::object_source(client, tool::connection_factory(common));
  if (common.json()) {  // JSON lines: one object per entry, streamed (see man page)
    browse::list(*source, snap.root, o.path, o.recursive, [](const browse::Item& item) {
      std::cout << json(item).dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    });
    std::cout.flush();
    return 0;
  }
  tool::Table t({"MODE", {"UID", tool::Align::right}, {"GID", tool::Align::right}, {"SIZE", tool::Align::right}, "MTIME",
                 "PATH"});
  size_t entries = 0;
  browse::list(*source, snap.root, o.path, o.recursive, [&](const browse::Item& item) {
    const auto& e = item.entry;
    ++entries;
    if (!o.long_format) {
      std::cout << shown(item.path) << "\n";  // plain paths, for a pipe or a glance
      return;
    }
    t.row({browse::permissions(e), std::to_string(e.uid), std::to_string(e.gid), size_cell(e), util::rfc3339(e.mtime_ns),
           name_cell(item.path, e)});
  });
  if (entries == 0) std::cout << "no entries\n";
  else if (o.long_format) t.print(std::cout);
  return 0;
}

std::optional<int64_t> time_flag(const std::string& flag, const std::string& value, bool upper) {
  if (value.empty()) return std::nullopt;
  auto t = upper ? util::parse_time_upper(value) : util::parse_time_lower(value);
  if (!t) throw Error(ErrorKind::usage, flag + " " + value + ": not a date (YYYY-MM-DD[ HH:MM[:SS]])");
  return t;
}

int find(const tool::Common& common, const Options& o) {
  need_device(o);
  if (o.all && !o.find_snapshots.empty()) throw Error(ErrorKind::usage, "--all and --snapshot exclude each other");
  browse::FindOptions fo{o.patterns, time_flag("--newer", o.newer, false), time_flag("--older", o.older, true)};
  auto client = tool::connect(common);
  std::vector<browse::SnapshotRef> snaps;
  for (const auto& spec : o.find_snapshots) snaps.push_back(snapshot_ref(client::resolve_snapshot(client, o.device, spec)));
  if (snaps.empty()) {  // every snapshot of the device the resolver names
    json latest = client::resolve_snapshot(client, o.device, "latest");
    json list = client.call("snapshot.list", {{"device_id", latest.at("device_id")}});
    for (const auto& s : list["snapshots"]) snaps.push_back(snapshot_ref(s));
  }
  auto source = endpoint::object_source(client, tool::connection_factory(common));
  auto found = browse::find(*source, snaps, fo);
  if (common.json()) {
    for (const auto& f : found) std::cout << json(f).dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    std::cout.flush();
    return 0;
  }
  if (found.empty()) return std::cout << "no matches in " << snaps.size() << " snapshots\n", 0;
  std::vector<std::vector<std::string>> rows{{"PATH", "TYPE", "SIZE", "MTIME", "SNAPSHOTS", "FIRST", "LAST"}};
  for (const auto& f : found)
    rows.push_back({name_cell(f.path, f.entry), std::string(tree::kind_name(f.entry.kind)), size_cell(f.entry),
                    util::rfc3339(f.entry.mtime_ns), std::to_string(f.snapshots.size()), f.snapshots.front(),
                    f.snapshots.back()});
  print_table(std::cout, rows);
  return 0;
}

int diff(const tool::Common& common, const Options& o) {
  need_device(o);
  if (o.diff_args.size() < 2 || o.diff_args.size() > 3)
    throw Error(ErrorKind::usage, "diff takes two snapshots and an optional path: diff --device D S1 S2 [PATH]");
  auto client = tool::connect(common);
  json s1 = client::resolve_snapshot(client, o.device, o.diff_args[0]);
  json s2 = client::resolve_snapshot(client, o.device, o.diff_args[1]);
  std::string path = o.diff_args.size() == 3 ? o.diff_args[2] : "/";
  auto source = endpoint::object_source(client, tool::connection_factory(common));
  auto r = browse::diff(*source, snapshot_ref(s1).root, snapshot_ref(s2).root, path);
  json doc = {{"device_id", s1["device_id"]}, {"from", s1["snapshot_id"]}, {"to", s2["snapshot_id"]},
              {"path", path}, {"changes", r.changes}, {"summary", r.summary}};
  tool::print(common, doc, [&](std::ostream& out) {
    static const char* k_marks[] = {"+", "-", "M", "U", "T"};
    std::vector<std::vector<std::string>> rows{{"", "TYPE", "BEFORE", "AFTER", "PATH"}};
    for (const auto& c : r.changes) {
      const auto& e = c.after ? *c.after : *c.before;
      rows.push_back({k_marks[static_cast<int>(c.change)], std::string(tree::kind_name(e.kind)),
                      c.before ? size_cell(*c.before) : "", c.after ? size_cell(*c.after) : "", name_cell(c.path, e)});
    }
    if (r.changes.empty()) out << "no differences\n";
    else print_table(out, rows);
    const auto& s = r.summary;
    out << "\nadded " << s.added << " (" << tool::human_bytes(s.added_bytes) << "), removed " << s.removed << " ("
        << tool::human_bytes(s.removed_bytes) << "), modified " << s.modified << " ("
        << tool::human_bytes(s.modified_bytes_before) << " -> " << tool::human_bytes(s.modified_bytes_after)
        << "), metadata only " << s.metadata << ", type changed " << s.type << "\n";
  });
  return 0;
}

/// A file raw (or in an archive when --archive is given), anything else as an archive.
int dump_to_stdout(const tool::Common& common, const Options& o, const std::string& path) {
  need_device(o);
  if (::isatty(1)) throw Error(ErrorKind::usage, "dump writes data to stdout, which is a terminal: redirect or pipe it");
  if (!o.archive.empty() && o.archive != "tar" && o.archive != "zip")
    throw Error(ErrorKind::usage, "--archive " + o.archive + ": tar or zip");
  auto client = tool::connect(common);
  auto snap = snapshot_ref(client::resolve_snapshot(client, o.device, o.snapshot));
  auto source = endpoint::object_source(client, tool::connection_factory(common));
  tree::Entry entry = browse::resolve(*source, snap.root, path);
  std::string at = "/";
  for (const auto& part : tree::split_path(path)) at = tree::child_path(at, part);
  browse::DumpStats stats;
  if (o.archive.empty() && entry.kind == tree::Kind::file)
    stats = browse::dump_file(*source, entry, at, 1);
  else
    stats = browse::dump_archive(*source, entry, at, 1,
                                 o.archive == "zip" ? util::ArchiveFormat::zip : util::ArchiveFormat::tar);
  for (const auto& p : stats.skipped) util::warn("dump: " + shown(p) + ": a socket, left out of the archive");
  return 0;
}

int restore(const tool::Common& common, const Options& o) {
  need_device(o);
  if (o.paths.empty()) throw Error(ErrorKind::usage, "--path is required (use --path / for everything)");
  if (o.to.empty()) throw Error(ErrorKind::usage, "--to is required");
  if (o.to == "-") {
    if (o.paths.size() != 1) throw Error(ErrorKind::usage, "--to - (dump to stdout) takes one --path");
    return dump_to_stdout(common, o, o.paths.front());
  }
  if (!o.archive.empty()) throw Error(ErrorKind::usage, "--archive is for dump and --to -");
  std::error_code ec;
  if (std::filesystem::exists(o.to, ec) && !std::filesystem::is_directory(o.to, ec))
    throw Error(ErrorKind::usage, "--to " + o.to + ": not a directory");
  auto client = tool::connect(common);
  json snap = client::resolve_snapshot(client, o.device, o.snapshot);
  tool::Progress bar(common, "restore");
  auto state = tool::ProgressState::of_bytes("restoring", 0, 0);
  // The whole snapshot: its stats give the total (the restorer reports bytes, not files).
  if (o.paths == std::vector<std::string>{"/"}) state.bytes_total = snap.value("stats", json::object()).value("bytes", uint64_t(0));
  // The restore makes --to when missing, and removes what it made if it fails.
  auto stats = endpoint::restore(
      client, snap, o.paths, o.to,
      [&](uint64_t bytes) {
        state.bytes = bytes;
        bar.update(state);
      },
      tool::connection_factory(common), *materialize::overwrite_from_name(o.overwrite));
  state.bytes = stats.bytes;
  state.files = stats.files;
  bar.update(state);
  bar.finish();
  json doc = {{"device_id", snap["device_id"]}, {"snapshot_id", snap["snapshot_id"]}, {"time", snap["time"]},
              {"to", o.to}, {"paths", o.paths}, {"overwrite", o.overwrite}, {"stats", stats}};
  try {  // the transaction log; a restore that worked is not failed for it
    endpoint::report_restore(client, snap, o.paths, o.to, stats);
  } catch (const std::exception& e) {
    util::warn(std::string("restore not logged: ") + e.what());
  }
  tool::print(common, doc, [&](std::ostream& out) {
    out << "restored " << stats.files << " files, " << stats.dirs << " dirs (" << tool::human_bytes(stats.bytes)
        << ") from snapshot " << snap["snapshot_id"].get<std::string>() << " (" << snap["time"].get<std::string>()
        << ") into " << o.to << "\n";
    if (stats.kept) out << stats.kept << " existing entries left as they were (--overwrite " << o.overwrite << ")\n";
  });
  return 0;
}

int snapshots(const tool::Common& common, const Options& o) {
  need_device(o);
  auto client = tool::connect(common);
  json list = client.call("snapshot.list", {{"device_id", client::resolve_device(client, o.device)}});
  for (auto& s : list["snapshots"]) s.erase("root");
  tool::print(common, list, [&](std::ostream& out) {
    tool::Table t({"SNAPSHOT", "TIME", {"FILES", tool::Align::right}, {"SIZE", tool::Align::right}, {"CVD", tool::Align::right},
                   "KEPT BY", "NOTE"});
    for (const auto& s : list["snapshots"]) {
      const auto& st = s["stats"];
      uint64_t unreadable = st.value("unreadable", uint64_t(0));
      t.row({s["snapshot_id"].get<std::string>(), tool::short_time(s["time"].get<std::string>()),
             std::to_string(st.value("files", 0)), tool::human_bytes(st.value("bytes", uint64_t(0))),
             std::to_string(s.value("cvd", 1)), tool::cell(s.value("kept_by", json::array())),
             unreadable ? "incomplete: " + std::to_string(unreadable) + " entries left out" : ""});
    }
    t.print(out, "no snapshots of device " + o.device);
  });
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Restore files, subtrees or a whole snapshot of a device", "mirage-restore"};
  app.set_version_flag("--version", MIRAGE_VERSION);
  Options o;
  tool::Common common;
  tool::add_common(app, common);
  tool::add_progress(app, common);
  const char* snapshot_help = "Id or prefix, latest, or a time: the newest\nat or before it (2026-11-30 14:00, yesterday,\n2h, 3d, 1w)";
  app.add_option("--device", o.device, "Device id or unique hostname");
  app.add_option("--snapshot", o.snapshot, snapshot_help);
  app.add_option("--path", o.paths, "Path in the snapshot (repeatable; / for all)");
  app.add_option("--to", o.to, "Directory to restore into (- : dump to stdout)");
  app.add_option("--archive", o.archive, "With --to -: tar or zip")->check(CLI::IsMember({"tar", "zip"}));
  app.add_option("--overwrite", o.overwrite, "An existing file at the target: replace it\n(always, the default), "
                                             "unless its size and\nmtime match (if-changed), or keep it (never)")
      ->check(CLI::IsMember({"always", "if-changed", "never"}));
  app.fallthrough();
  auto* list = app.add_subcommand("snapshots", "List a device's snapshots");
  list->add_option("--device", o.device, "Device id or unique hostname");
  auto* ls_cmd = app.add_subcommand("ls", "List a directory of a snapshot");
  ls_cmd->add_option("--device", o.device, "Device id or unique hostname");
  ls_cmd->add_option("--snapshot", o.snapshot, snapshot_help);
  ls_cmd->add_option("path", o.path, "Path in the snapshot (default /)");
  ls_cmd->add_flag("--recursive,-R", o.recursive, "Everything below the path");
  ls_cmd->add_flag("--long,-l", o.long_format, "Mode, owner, size, mtime (text)");
  auto* find_cmd = app.add_subcommand("find", "Find paths by glob across snapshots");
  find_cmd->add_option("--device", o.device, "Device id or unique hostname");
  find_cmd->add_option("--snapshot", o.find_snapshots, "Only this snapshot (repeatable)");
  find_cmd->add_flag("--all", o.all, "Every snapshot of the device (default)");
  find_cmd->add_option("--newer", o.newer, "Only entries with mtime at or after T");
  find_cmd->add_option("--older", o.older, "Only entries with mtime at or before T");
  find_cmd->add_option("pattern", o.patterns, "Glob on names, or on paths with a /")->required();
  auto* diff_cmd = app.add_subcommand("diff", "What changed between two snapshots");
  diff_cmd->add_option("--device", o.device, "Device id or unique hostname");
  diff_cmd->add_option("args", o.diff_args, "S1 S2 [PATH]")->required();
  auto* dump_cmd = app.add_subcommand("dump", "A file to stdout, a directory as tar or zip");
  dump_cmd->add_option("--device", o.device, "Device id or unique hostname");
  dump_cmd->add_option("--snapshot", o.snapshot, snapshot_help);
  dump_cmd->add_option("--archive", o.archive, "tar or zip (default: a file raw, else tar)")
      ->check(CLI::IsMember({"tar", "zip"}));
  dump_cmd->add_option("path", o.path, "Path in the snapshot")->required();
  restore_cmd::MountOptions mo;
  auto* mount_cmd = app.add_subcommand("mount", "Mount the snapshots read-only (FUSE)");
  mount_cmd->add_option("--device", mo.device, "Device id or unique hostname");
  mount_cmd->add_option("--snapshot", mo.snapshot, "Only this snapshot, at the root\n(default: every one, see the man page)");
  mount_cmd->add_option("mountpoint", mo.mountpoint, "An empty directory")->required();
  bool foreground = true;
  mount_cmd->add_flag("--foreground,-f", foreground, "Stay in the foreground (the default and only way)");
  mount_cmd->add_flag("--allow-other", mo.allow_other, "Other users may read it too (their modes checked)");
  mount_cmd->add_flag("--debug", mo.debug, "libfuse's log of every request on stderr");
  return tool::run(argc, argv, app, common,
                   {{list, [&] { return snapshots(common, o); }},
                    {ls_cmd, [&] { return ls(common, o); }},
                    {find_cmd, [&] { return find(common, o); }},
                    {diff_cmd, [&] { return diff(common, o); }},
                    {dump_cmd, [&] { return dump_to_stdout(common, o, o.path); }},
                    {mount_cmd, [&] { return restore_cmd::mount(common, mo); }},
                    {nullptr, [&] { return restore(common, o); }}});
}
