// mirage-restore: list a device's snapshots; restore files or subtrees from one.
#include <iostream>

#include "libmirage/endpoint/centralize.hpp"
#include "cmd/common/tool.hpp"
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
};

int restore(const tool::Common& common, const Options& o) {
  if (o.device.empty()) throw Error(ErrorKind::usage, "--device is required");
  if (o.paths.empty()) throw Error(ErrorKind::usage, "--path is required (use --path / for everything)");
  if (o.to.empty()) throw Error(ErrorKind::usage, "--to is required");
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
  if (o.device.empty()) throw Error(ErrorKind::usage, "--device is required");
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
  app.add_option("--device", o.device, "Device id or unique hostname");
  app.add_option("--snapshot", o.snapshot, "Id or prefix, latest, or a time: the newest\nat or before "
                                           "it (2026-11-30 14:00, yesterday,\n2h, 3d, 1w)");
  app.add_option("--path", o.paths, "Path in the snapshot (repeatable; / for all)");
  app.add_option("--to", o.to, "Directory to restore into");
  app.add_option("--overwrite", o.overwrite, "An existing file at the target: replace it\n(always, the default), "
                                             "unless its size and\nmtime match (if-changed), or keep it (never)")
      ->check(CLI::IsMember({"always", "if-changed", "never"}));
  app.fallthrough();
  auto* list = app.add_subcommand("snapshots", "List a device's snapshots");
  list->add_option("--device", o.device, "Device id or unique hostname");
  return tool::run(argc, argv, app, common,
                   {{list, [&] { return snapshots(common, o); }}, {nullptr, [&] { return restore(common, o); }}});
}
