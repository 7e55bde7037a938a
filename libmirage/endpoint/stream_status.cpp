#include "libmirage/endpoint/stream_status.hpp"

#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <limits>

#include "libmirage/proto/transport.hpp"
#include "libmirage/util/error.hpp"
#include "libmirage/util/fd.hpp"
#include "libmirage/util/json_input.hpp"

namespace mirage::endpoint {

namespace fs = std::filesystem;
using nlohmann::json;

fs::path restore_status_file(const std::string& device) {
  return fs::path(proto::default_data_dir()) / "restore" / (device + ".json");
}

fs::path revert_status_file(const fs::path& state_dir) { return state_dir / "stream-status.json"; }

void write_stream_status(const fs::path& file, const json& doc) {
  std::error_code ec;
  fs::create_directories(file.parent_path(), ec);
  util::AtomicFile out(file, 0600);
  out.write(doc.dump(2) + "\n");
  out.commit();
}

json read_stream_status(const fs::path& file) {
  try {
    json local = util::read_json_input(file.string(), "status file");
    auto is_count = [](const json& v) { return v.is_number_unsigned(); };
    if (!local.is_object()) throw Error(ErrorKind::integrity, "not a JSON object");
    for (const char* key : {"stage", "kind", "to", "snapshot_id", "device_id", "started", "usable", "finished", "error",
                            "on_demand_why_not"})
      if (local.contains(key) && !local[key].is_string()) throw Error(ErrorKind::integrity, std::string(key) + " is not a string");
    if (local.contains("on_demand") && !local["on_demand"].is_boolean())
      throw Error(ErrorKind::integrity, "on_demand is not true or false");
    if (local.contains("progress")) {
      json& p = local["progress"];
      if (!p.is_object() || !std::all_of(p.begin(), p.end(), is_count))
        throw Error(ErrorKind::integrity, "progress holds something other than counts");
      for (const char* what : {"files", "bytes"}) {
        uint64_t total = p.value(std::string(what) + "_total", uint64_t(0));
        uint64_t done = p.value(std::string(what) + "_done", uint64_t(0));
        p[std::string(what) + "_left"] = total > done ? total - done : 0;
      }
    }
    if (local.contains("pid") && (!is_count(local["pid"]) || local["pid"].get<uint64_t>() == 0 ||
                                  local["pid"].get<uint64_t>() > uint64_t(std::numeric_limits<pid_t>::max())))
      throw Error(ErrorKind::integrity, "pid is not a process id");
    std::string stage = local.value("stage", "");
    if (stage != "done" && stage != "failed" && local.contains("pid") &&
        ::kill(local["pid"].get<pid_t>(), 0) != 0 && errno == ESRCH)
      local["stage"] = "interrupted";  // run it again: it goes on where it stopped
    return local;
  } catch (const Error& e) {
    return {{"stage", "damaged"}, {"file", file.string()}, {"error", e.what()}};
  }
}

}  // namespace mirage::endpoint
