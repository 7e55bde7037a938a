// mirage-restore: list a device's snapshots; browse them (ls, find, diff, dump); restore
// files or subtrees from one; revert a device to one on the device itself (--on-device);
// mount them read-only (mount.cpp).
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <limits>
#include <csignal>
#include <iostream>
#include <sstream>

#include "cmd/common/tool.hpp"
#include "cmd/mirage-restore/mount.hpp"
#include "libmirage/browse/browse.hpp"
#include "libmirage/endpoint/centralize.hpp"
#include "libmirage/endpoint/revert.hpp"
#include "libmirage/endpoint/stream_status.hpp"
#include "libmirage/policy/upload_policy.hpp"
#include "libmirage/proto/transport.hpp"
#include "libmirage/util/clock.hpp"
#include "libmirage/util/fd.hpp"
#include "libmirage/util/json_input.hpp"
#include "libmirage/util/error.hpp"
#include "libmirage/util/log.hpp"

using namespace mirage;
using nlohmann::json;

namespace {
using tool::shown;

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
  bool on_device = false, wait = false, dry_run = false;  ///< a revert on the device
  std::string mode = "system";  ///< with --from-device: full unless given (mode_given)
  bool mode_given = false;
  double timeout = 3600;
  bool stream = false;
  std::string bwlimit;  ///< --stream: the background fill's rate (SIZE per second)
  std::string state;    ///< status --state: an endpoint's state directory (mirage-centralize's)
  std::string from_device;  ///< the device whose CVD --device takes over
  bool no_revert = false;   ///< with --from-device: take over only
  bool latest = false;      ///< --latest: --snapshot's default (the newest), said explicitly
};

void need_device(const Options& o) {
  if (o.device.empty()) throw Error(ErrorKind::usage, "--device is required");
}

/// A snapshot as the browse functions take it, from client::resolve_snapshot's JSON.
browse::SnapshotRef snapshot_ref(const json& s) {
  return {s.at("snapshot_id").get<std::string>(), s.at("time_ns").get<int64_t>(),
          tree::decode_entry_hex(s.at("root").get<std::string>(), "snapshot " + s.at("snapshot_id").get<std::string>())};
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
    std::string lines;
    browse::list(*source, snap.root, o.path, o.recursive, [&](const browse::Item& item) {
      browse::append_json_line(lines, item);
      if (lines.size() >= (64u << 10)) {
        std::cout << lines;
        lines.clear();
      }
    });
    std::cout << lines << std::flush;
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

int find(const tool::Common& common, const Options& o) {
  need_device(o);
  if (o.all && !o.find_snapshots.empty()) throw Error(ErrorKind::usage, "--all and --snapshot exclude each other");
  browse::FindOptions fo{o.patterns, tool::time_flag("--newer", o.newer, false), tool::time_flag("--older", o.older, true)};
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
  // No snapshot spec starts with '/': one snapshot and a path, the second snapshot left out.
  if (o.diff_args[1].starts_with('/'))
    throw Error(ErrorKind::usage, "diff takes two snapshots before the path, and " + o.diff_args[1] +
                                      " is a path: diff --device D S1 S2 [PATH] (S2 may be latest)");
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
  // A reader that goes away (| head -c1) is an error that says so, over HTTP too (where
  // SIGPIPE would end the process without a word).
  ::signal(SIGPIPE, SIG_IGN);
  try {
    if (o.archive.empty() && entry.kind == tree::Kind::file)
      stats = browse::dump_file(*source, entry, at, 1);
    else
      stats = browse::dump_archive(*source, entry, at, 1,
                                   o.archive == "zip" ? util::ArchiveFormat::zip : util::ArchiveFormat::tar);
  } catch (const Error& e) {
    struct pollfd out{1, 0, 0};
    if (::poll(&out, 1, 0) == 1 && (out.revents & POLLERR))  // a pipe without a reader
      throw Error(ErrorKind::failed, "dump " + shown(at) + ": standard output was closed by its reader (broken pipe); "
                                     "what it read is incomplete");
    throw;
  }
  for (const auto& p : stats.skipped) util::warn("dump: " + shown(p) + ": a socket, left out of the archive");
  return 0;
}

/// --bwlimit's value in bytes a second; Error(usage) naming the flag.
uint64_t bwlimit_rate(const std::string& value) {
  auto rate = tool::parse_size(value);
  if (!rate || !*rate) throw Error(ErrorKind::usage, "--bwlimit " + value + ": expected a rate such as 20M (bytes a second)");
  return *rate;
}

/// A revert's plan as a dry run prints it: the counts, the bytes, every path.
void print_revert_plan(std::ostream& out, const json& p) {
  out << "would revert " << p["device_id"].get<std::string>() << " to snapshot " << p["snapshot_id"].get<std::string>()
      << " (" << p["mode"].get<std::string>() << "), against its latest snapshot "
      << p["against_snapshot"].get<std::string>() << "\n";
  std::string counts;
  for (const char* a : {"create", "replace", "metadata", "remove"})
    if (p["counts"].contains(a)) counts += (counts.empty() ? "" : ", ") + p["counts"][a].dump() + " " + a;
  out << "  " << (counts.empty() ? "nothing to change" : counts) << "\n";
  out << "  fetch " << tool::human_bytes(p["fetch_bytes"].get<uint64_t>()) << ", reuse "
      << tool::human_bytes(p["local_bytes"].get<uint64_t>()) << " found on the device\n";
  tool::Table t({"  ACTION", "PATH", {"FETCH", tool::Align::right}});
  for (const auto& op : p["ops"])
    t.row({"  " + op["action"].get<std::string>(), shown(op["path"].get<std::string>()),
           op.contains("fetch_bytes") ? tool::human_bytes(op["fetch_bytes"].get<uint64_t>()) : ""});
  t.print(out);
}

/// --on-device: queues a revert order (or prints its plan), and with --wait waits for
/// the device to report it.
int revert(const tool::Common& common, const Options& o) {
  need_device(o);
  if (!o.paths.empty() || !o.to.empty()) throw Error(ErrorKind::usage, "--on-device takes no --path or --to");
  // --stream: the sync stages placeholders for what lies outside the minimal set and fills
  // them after the revert (endpoint/revert.hpp); a whole-device revert only.
  if (o.stream && o.mode != "full")
    throw Error(ErrorKind::usage, "--stream with --on-device needs --mode full (a whole-device revert); --mode " + o.mode +
                                      " reverts without it");
  if (!o.bwlimit.empty() && !o.stream) throw Error(ErrorKind::usage, "--bwlimit is for --stream");
  std::optional<uint64_t> rate;
  if (!o.bwlimit.empty()) rate = bwlimit_rate(o.bwlimit);
  auto client = tool::connect(common);
  json snap = client::resolve_snapshot(client, o.device, o.snapshot);
  if (o.dry_run) {
    json plan = endpoint::revert_dry_run(client, snap, o.mode);
    tool::print(common, plan, [&](std::ostream& out) { print_revert_plan(out, plan); });
    return 0;
  }
  json params = {{"device", snap["device_id"]}, {"snapshot", snap["snapshot_id"]}, {"mode", o.mode}};
  if (o.stream) params["stream"] = true;
  if (rate) params["bwlimit"] = *rate;
  json created = client.call("order.revert", params);
  json order = created.at("orders").at(0);
  int status = 0;
  if (o.wait) {
    tool::Progress bar(common, "revert");
    order = tool::wait_for_order(client, order["order_id"], o.timeout, bar,
                                 "to revert to snapshot " + snap["snapshot_id"].get<std::string>() + " on its next sync");
    bar.finish();
    if (order["state"] != "done") status = 1;
  }
  tool::print(common, order, [&](std::ostream& out) {
    tool::Table t({"DEVICE", "ORDER", "SNAPSHOT", "MODE", "STATE"});
    t.row({tool::cell(order["device_id"]), tool::cell(order["order_id"]), tool::cell(order["spec"]["snapshot_id"]),
           tool::cell(order["spec"]["mode"]), order["state"].get<std::string>() + (o.wait ? "" : ", on its next sync")});
    t.print(out);
    const json& r = order.value("result", json::object());
    if (r.contains("error")) out << "failed: " << r["error"].get<std::string>() << "\n";
    if (r.contains("apply"))
      out << "protected by snapshot " << tool::cell(r["protected_by"]) << "; wrote " << r["apply"]["written"] << ", removed "
          << r["apply"]["removed"] << ", " << tool::human_bytes(r["apply"]["bytes_fetched"].get<uint64_t>())
          << " fetched, " << tool::human_bytes(r["apply"]["bytes_local"].get<uint64_t>()) << " found on the device\n";
  });
  return status;
}

/// --stream: the minimal set whole and placeholders for the rest, then the fill (see
/// materialize/stream.hpp); progress kept in status_file() for `status`.
int restore_stream(const tool::Common& common, const Options& o, client::Client& client, const json& snap) {
  endpoint::StreamOptions so;
  json pol = client.call("policy.get", {{"device_id", snap["device_id"]}});
  so.policy = policy::UploadPolicy::from_json(pol.at("policy"));
  if (!o.bwlimit.empty()) so.bytes_per_second = bwlimit_rate(o.bwlimit);
  const std::string device = snap["device_id"].get<std::string>();
  auto file = endpoint::restore_status_file(device);
  std::error_code ec;
  std::filesystem::create_directories(file.parent_path(), ec);
  // One streaming restore of a device at a time on this machine: two would write one
  // status file (and fill one target twice).
  util::PidLock lock(file.parent_path() / (device + ".lock"), [&](const std::string& holder) {
    return "another streaming restore of device " + device + (holder.empty() ? "" : " (pid " + holder + ")") +
           " is running on this machine (" + file.string() + "); wait for it, or stop it and run this again to go on";
  });
  json status = {{"device_id", device}, {"snapshot_id", snap["snapshot_id"]}, {"time", snap["time"]},
                 {"to", std::filesystem::absolute(o.to, ec).lexically_normal().string()}, {"pid", ::getpid()},
                 {"stage", "minimal-set"}, {"kind", "to"}, {"started", util::rfc3339(util::now_ns())}};
  endpoint::write_stream_status(file, status);
  tool::Progress bar(common, "restore");
  auto state = tool::ProgressState::of_bytes("restoring the minimal set", 0, 0);
  so.progress = [&](uint64_t bytes, uint64_t files) {
    state.bytes = bytes;
    state.files = files;
    bar.update(state);
  };
  auto last_write = std::chrono::steady_clock::now();
  so.usable = [&](const materialize::RestoreStats& stats, const materialize::Streamer& streamer) {
    status["stage"] = "filling";
    status["usable"] = util::rfc3339(util::now_ns());
    status["on_demand"] = streamer.on_demand();
    if (!streamer.on_demand()) status["on_demand_why_not"] = streamer.why_not();
    endpoint::write_stream_status(file, status);
    util::log(util::LogLevel::info, "the tree is usable: " + std::to_string(stats.placeholders) + " files are placeholders, filled now" +
               (streamer.on_demand() ? " (a program that reads one waits for it)"
                                     : "; " + streamer.why_not() + ": a program that reads one before it is filled sees zeros"));
    try {
      auto left = streamer.progress();  // the server's bytes_left was always 0
      endpoint::report_restore(client, snap, o.paths, o.to, stats, "usable", left.files_total - left.files_done,
                               left.bytes_total - left.bytes_done);
    } catch (const std::exception& e) {
      util::warn(std::string("restore not logged: ") + e.what());
    }
    state = tool::ProgressState::of_bytes("filling placeholders", 0, 0);
  };
  so.fill_progress = [&](const materialize::StreamProgress& p) {
    state.files = p.files_done;
    state.files_total = p.files_total;
    state.bytes = p.bytes_done;
    state.bytes_total = p.bytes_total;
    bar.update(state);
    if (std::chrono::steady_clock::now() - last_write < std::chrono::seconds(1)) return;
    last_write = std::chrono::steady_clock::now();
    status["progress"] = p;
    endpoint::write_stream_status(file, status);
  };
  endpoint::StreamResult r;
  try {
    r = endpoint::restore_streaming(client, snap, o.paths, o.to, tool::connection_factory(common), so);
  } catch (...) {
    status["stage"] = "failed";
    endpoint::write_stream_status(file, status);
    throw;
  }
  bar.finish();
  status["stage"] = "done";
  status["progress"] = r.fill;
  status["finished"] = util::rfc3339(util::now_ns());
  endpoint::write_stream_status(file, status);
  auto total = r.stats;
  total.bytes += r.fill.bytes_done;
  total.wire_bytes += r.fill.wire_bytes;
  try {
    endpoint::report_restore(client, snap, o.paths, o.to, total);
  } catch (const std::exception& e) {
    util::warn(std::string("restore not logged: ") + e.what());
  }
  json doc = {{"device_id", snap["device_id"]}, {"snapshot_id", snap["snapshot_id"]}, {"time", snap["time"]},
              {"to", o.to}, {"paths", o.paths}, {"stream", r}};
  tool::print(common, doc, [&](std::ostream& out) {
    out << "restored " << r.stats.files << " files from snapshot " << snap["snapshot_id"].get<std::string>() << " into "
        << o.to << ": usable after " << tool::human_seconds(r.usable_seconds) << ", complete after "
        << tool::human_seconds(r.seconds) << " (" << r.fill.files_done << " placeholders filled, " << r.fill.on_demand
        << " first because a program read them)\n";
  });
  return 0;
}

/// The local status's row as `status` draws it (stage, where, files and bytes done and left).
void print_local_status(std::ostream& out, const std::string& device, const json& l) {
  if (l.is_null()) {
    out << "no streaming restore of " << device << " on this machine\n";
    return;
  }
  bool on_device = l.value("kind", "") == "on-device";
  if (l["stage"] == "damaged") {
    out << "here: the status file " << l["file"].get<std::string>() << " is damaged (" << l["error"].get<std::string>()
        << "); " << (on_device ? "the device's next sync" : "the restore run again") << " goes on and rewrites it\n";
    return;
  }
  json p = l.value("progress", json::object());
  auto count = [&](const char* key) { return std::to_string(p.value(key, uint64_t(0))); };
  auto bytes = [&](const char* key) { return tool::human_bytes(p.value(key, uint64_t(0))); };
  tool::Table t({"WHERE", "KIND", "STAGE", "INTO", "SNAPSHOT", {"FILES DONE", tool::Align::right},
                 {"FILES LEFT", tool::Align::right}, {"BYTES DONE", tool::Align::right}, {"BYTES LEFT", tool::Align::right}});
  t.row({"here", on_device ? "revert on the device" : "restore --to", l.value("stage", "?"), shown(l.value("to", "?")),
         l.value("snapshot_id", "?"), count("files_done"), count("files_left"), bytes("bytes_done"), bytes("bytes_left")});
  t.print(out);
  if (l.value("stage", "") == "interrupted")
    out << (on_device ? "interrupted: the device's next sync (mirage-centralize) goes on where it stopped\n"
                      : "interrupted: run the same restore again to go on\n");
  if (l.contains("on_demand") && !l["on_demand"].get<bool>())
    out << "a read of a placeholder is not held (" << l.value("on_demand_why_not", "no fanotify pre-content events")
        << "): it sees zeros until the fill reaches it\n";
}

/// `status`: a streaming restore's progress, here and as the server last heard it. Here
/// is the status file of --state DIR (a streamed revert on this device), else this
/// machine's --to restore of the device, else a streamed revert in the device's default
/// state directory. A server that cannot be asked leaves the local status shown, and
/// says why.
int status(const tool::Common& common, const Options& o) {
  need_device(o);
  std::string device = o.device;
  json latest;  // the newest restore.usable or restore.done (events come in id order)
  std::string server_error;
  std::exception_ptr server_failure;
  try {
    auto client = tool::connect(common);
    device = client::resolve_device(client, o.device);
    json events = client.call("events.list", {{"device_id", device}, {"type", "restore."}});
    for (const auto& e : events["events"])
      if (e.value("type", "") == "restore.usable" || e.value("type", "") == "restore.done") latest = e;
  } catch (const Error& e) {
    server_error = e.what();
    server_failure = std::current_exception();
  }
  std::vector<std::filesystem::path> files;
  if (!o.state.empty()) {
    files.push_back(endpoint::revert_status_file(o.state));
  } else {
    files.push_back(endpoint::restore_status_file(device));
    files.push_back(endpoint::revert_status_file(std::filesystem::path(proto::default_data_dir()) / "endpoint" / device));
  }
  json doc = {{"device_id", device}, {"local", nullptr}, {"server", latest}};
  std::error_code ec;
  for (const auto& file : files)
    if (doc["local"].is_null() && std::filesystem::exists(file, ec)) doc["local"] = endpoint::read_stream_status(file);
  if (!server_error.empty()) {
    if (doc["local"].is_null()) std::rethrow_exception(server_failure);  // nothing to show
    doc["server_error"] = server_error;
  }
  tool::print(common, doc, [&](std::ostream& out) {
    print_local_status(out, device, doc["local"]);
    if (!server_error.empty()) {
      out << "server: not asked (" << server_error << ")\n";
    } else if (latest.is_null()) {
      out << "server: no restore of " << device << " reported\n";
    } else {
      out << "server: " << latest.value("type", "?") << " at " << latest.value("time", "?");
      const json& d = latest.value("detail", json::object());
      if (d.contains("files_left")) out << ", " << d["files_left"].get<uint64_t>() << " files left then";
      out << " (into " << d.value("to", "?") << " on " << d.value("host", "?") << ")\n";
    }
  });
  return 0;
}

int restore(const tool::Common& common, const Options& o) {
  if (o.on_device) return revert(common, o);
  if (o.wait || o.dry_run || o.mode != "system") throw Error(ErrorKind::usage, "--mode, --wait and --dry-run go with --on-device");
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
  if (o.stream) return restore_stream(common, o, client, snap);
  if (!o.bwlimit.empty()) throw Error(ErrorKind::usage, "--bwlimit is for --stream");
  tool::Progress bar(common, "restore");
  auto state = tool::ProgressState::of_bytes("restoring", 0, 0);
  // The total in bytes (the restorer reports bytes, not files), from the trees below the
  // paths (read once more; they are small beside the data): the snapshot's stats count a
  // hardlinked file at each of its names, the restore writes it once.
  if (tool::progress_mode(common) != tool::ProgressMode::none)
    state.bytes_total = endpoint::restore_bytes(client, snap, o.paths);
  // The restore makes --to when missing, and removes what it made if it fails.
  auto stats = endpoint::restore(
      client, snap, o.paths, o.to,
      [&](uint64_t bytes, uint64_t files) {
        state.bytes = bytes;
        state.files = files;
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

/// --from-device: --device takes over the CVD (device.replace), then gets its content
/// by a revert order to the CVD's newest snapshot, carried out on its next sync.
int take_over(const tool::Common& common, const Options& o) {
  need_device(o);
  if (!o.paths.empty() || !o.to.empty() || o.stream || !o.bwlimit.empty())
    throw Error(ErrorKind::usage, "--from-device takes no --path, --to, --stream or --bwlimit");
  json params = {{"device_id", o.device}, {"from_device", o.from_device}};
  std::string mode = o.mode_given ? o.mode : "full";
  if (mode != "full" && mode != "user-data")
    throw Error(ErrorKind::usage, "--mode " + mode + " with --from-device: full or user-data");
  if (o.dry_run || o.snapshot != "latest") throw Error(ErrorKind::usage, "--from-device takes no --dry-run or --snapshot");
  if (!o.no_revert) params["mode"] = mode;
  auto client = tool::connect(common);
  json r = client.call("device.replace", params);
  int status = 0;
  if (o.wait && r.contains("orders")) {
    tool::Progress bar(common, "replace");
    for (auto& order : r["orders"]) {
      order = tool::wait_for_order(client, order["order_id"], o.timeout, bar,
                                   "to carry out its " + order["spec"].value("type", std::string("revert")) + " order on its next sync");
      if (order["state"] != "done") status = 1;
    }
    bar.finish();
  }
  tool::print(common, r, [&](std::ostream& out) {
    if (r["already"].get<bool>())
      out << "device " << o.device << " had already taken over the CVD of device " << o.from_device << "\n";
    else
      out << "device " << o.device << " took over the CVD of device " << o.from_device << ": "
          << r["snapshots"].get<uint64_t>() << " snapshots (newest " << r["latest"].get<std::string>()
          << "), its layers and policy; device " << o.from_device << " is replaced and can no longer sync\n";
    if (r.contains("orders"))
      for (const auto& order : r["orders"])
        out << "order " << order["order_id"].get<std::string>() << " (" << order["spec"].value("type", "") << " "
            << order["spec"].value("mode", "") << ") " << order["state"].get<std::string>()
            << (order["state"] == "pending" ? ": device " + o.device + " carries it out on its next sync" : "") << "\n";
  });
  return status;
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
  tool::keep_freed_memory_for_reuse();  // a restore receives its chunks in MiB batches
  CLI::App app{"Restore files, subtrees or a whole snapshot of a device", "mirage-restore"};
  app.set_version_flag("--version", MIRAGE_VERSION);
  Options o;
  tool::Common common;
  tool::add_common(app, common);
  tool::add_progress(app, common);
  const char* snapshot_help = "Id or prefix, latest, or a time: the newest\nat or before it (2026-11-30 14:00, yesterday,\n2h, 3d, 1w)";
  app.add_option("--device", o.device, "Device id, name or unique hostname");
  auto* snapshot_opt = app.add_option("--snapshot", o.snapshot, snapshot_help);
  // An empty path ("$P" unset in a script) is refused, not taken for the whole snapshot.
  const auto not_empty = CLI::Validator(
      [](const std::string& v) { return v.empty() ? std::string("an empty path; give / for the whole snapshot") : std::string(); },
      "PATH");
  app.add_option("--path", o.paths, "Path in the snapshot (repeatable; / for all)")->check(not_empty);
  app.add_option("--to", o.to, "Directory to restore into (- : dump to stdout)");
  app.add_option("--archive", o.archive, "With --to -: tar or zip")->check(CLI::IsMember({"tar", "zip"}));
  app.add_option("--overwrite", o.overwrite, "An existing file at the target: replace it\n(always, the default), "
                                             "unless its size and\nmtime match (if-changed), or keep it (never)")
      ->check(CLI::IsMember({"always", "if-changed", "never"}));
  auto* on_device = app.add_flag("--on-device", o.on_device, "Revert the device itself to the snapshot\n(an order its next sync carries out)");
  auto* mode = app.add_option("--mode", o.mode, "With --on-device: system (the machine area,\nthe default), full, or user-data;\n"
                                                "with --from-device: full (default), user-data")
                   ->check(CLI::IsMember({"system", "full", "user-data"}));
  app.add_flag("--wait", o.wait, "With --on-device: wait until the device reports");
  app.add_option("--timeout", o.timeout, "Seconds --wait waits (default 3600)")->check(CLI::PositiveNumber);
  app.add_flag("--dry-run", o.dry_run, "With --on-device: print what would change");
  app.add_flag("--stream", o.stream, "With --to or --on-device --mode full: the\nminimal set first, the rest placeholders filled\nafter (reads first); usable early");
  app.add_option("--bwlimit", o.bwlimit, "With --stream: the background fill's rate\n(bytes a second, K/M/G)");
  app.add_flag("--latest", o.latest, "With --on-device: the newest snapshot (as\n--snapshot latest, the default)")->needs(on_device)->excludes(snapshot_opt);
  auto* from = app.add_option("--from-device", o.from_device, "Replacement: --device takes over this\ndevice's CVD (history, layers, policy)")
                   ->excludes(on_device);
  app.add_flag("--no-revert", o.no_revert, "With --from-device: take over only; queue\nno revert (restored offline)")
      ->needs(from)
      ->excludes(mode);
  app.fallthrough();
  auto* status_cmd = app.add_subcommand("status", "A streaming restore's progress (here, server)");
  status_cmd->add_option("--device", o.device, "Device id, name or unique hostname");
  status_cmd->add_option("--state", o.state, "On the device: its state directory, as\nmirage-centralize --state (a streamed revert)");
  auto* list = app.add_subcommand("snapshots", "List a device's snapshots");
  list->add_option("--device", o.device, "Device id, name or unique hostname");
  auto* ls_cmd = app.add_subcommand("ls", "List a directory of a snapshot");
  ls_cmd->add_option("--device", o.device, "Device id, name or unique hostname");
  ls_cmd->add_option("--snapshot", o.snapshot, snapshot_help);
  ls_cmd->add_option("path", o.path, "Path in the snapshot (default /)")->check(not_empty);
  ls_cmd->add_flag("--recursive,-R", o.recursive, "Everything below the path");
  ls_cmd->add_flag("--long,-l", o.long_format, "Mode, owner, size, mtime (text)");
  auto* find_cmd = app.add_subcommand("find", "Find paths by glob across snapshots");
  find_cmd->add_option("--device", o.device, "Device id, name or unique hostname");
  find_cmd->add_option("--snapshot", o.find_snapshots, "Only this snapshot (repeatable)");
  find_cmd->add_flag("--all", o.all, "Every snapshot of the device (default)");
  find_cmd->add_option("--newer", o.newer, "Only entries with mtime at or after T\n(2026-11-30, yesterday, 2h, 3d)");
  find_cmd->add_option("--older", o.older, "Only entries with mtime at or before T\n(2026-11-30 14:00, yesterday, 1w)");
  find_cmd->add_option("pattern", o.patterns, "Glob on names, or on paths with a /")->required();
  auto* diff_cmd = app.add_subcommand("diff", "What changed between two snapshots");
  diff_cmd->add_option("--device", o.device, "Device id, name or unique hostname");
  diff_cmd->add_option("args", o.diff_args, "S1 S2 [PATH]")->required();
  auto* dump_cmd = app.add_subcommand("dump", "A file to stdout, a directory as tar or zip");
  dump_cmd->add_option("--device", o.device, "Device id, name or unique hostname");
  dump_cmd->add_option("--snapshot", o.snapshot, snapshot_help);
  dump_cmd->add_option("--archive", o.archive, "tar or zip (default: a file raw, else tar)")
      ->check(CLI::IsMember({"tar", "zip"}));
  dump_cmd->add_option("path", o.path, "Path in the snapshot")->required()->check(not_empty);
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
                    {status_cmd, [&] { return status(common, o); }},
                    {mount_cmd, [&] { return restore_cmd::mount(common, mo); }},
                    {nullptr, [&] {
                       o.mode_given = mode->count() > 0;
                       return o.from_device.empty() ? restore(common, o) : take_over(common, o);
                     }}});
}
