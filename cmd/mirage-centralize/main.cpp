// mirage-centralize: register this endpoint and upload a snapshot of it; accept or
// reject pending devices.
#include <charconv>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>

#include <unistd.h>

#include "libmirage/endpoint/centralize.hpp"
#include "libmirage/endpoint/identity.hpp"
#include "libmirage/proto/transport.hpp"
#include "cmd/common/tool.hpp"
#include "libmirage/util/clock.hpp"
#include "libmirage/util/log.hpp"

using namespace mirage;
using nlohmann::json;

namespace {

struct Options {
  std::string root = "/";
  std::string device_id;
  std::string state_dir;
  std::string compression = "auto";  // or a zstd level
  unsigned threads = 2;
  std::string device;  // accept/reject argument
  bool reference = false;
  bool reenroll = false;    // accept/reject: the machine waiting for the device's re-enrolment
  std::string fingerprint;  // with --reenroll: the waiting machine's, as it printed it
  std::string policy;
  std::string state_filter;
  bool watch = false;
  double interval = 3600;  // seconds between syncs with --watch
  double poll = 30;        // seconds between checks for orders with --watch
  double jitter = 0.1;     // +- share of the interval
  std::vector<std::string> devices, collections;  // request
  std::string reason = "requested";
  bool wait = false;
  double timeout = 3600;
};

volatile std::sig_atomic_t g_stop = 0;

/// The device id a sync uses: --device-id, else detected (DMI UUID, machine-id); validated.
std::string device_id_of(const Options& o) {
  if (!o.device_id.empty()) {
    endpoint::check_device_id(o.device_id);
    return o.device_id;
  }
  auto id = endpoint::detect_device_id(o.root);
  if (!id) throw Error(ErrorKind::usage, "cannot tell this device's id (no DMI UUID or etc/machine-id); pass --device-id");
  return *id;
}

std::filesystem::path state_dir_of(const Options& o, const std::string& device) {
  return o.state_dir.empty() ? std::filesystem::path(proto::default_data_dir()) / "endpoint" / device
                             : std::filesystem::path(o.state_dir);
}

/// The connection settings the endpoint uses: over HTTP without a token, the device
/// speaks for itself with its credential (once it has one). Every sync and every order
/// check goes through here.
tool::Common endpoint_common(const tool::Common& common_in, const std::string& device, const std::filesystem::path& state) {
  tool::Common common = common_in;
  std::string server = common.server.empty() ? (getenv("MIRAGE_SERVER") ? getenv("MIRAGE_SERVER") : "") : common.server;
  if (common.token.empty() && server.rfind("http", 0) == 0 &&
      std::filesystem::exists(state / "credential"))
    common.token = "mdc_" + device + "." + endpoint::device_secret(state);
  return common;
}

/// Crash tests (tests/e2e/crash-*, tests/bench/crash-campaign.sh) name a point in the
/// environment; the sync dies there like kill -9 (exit 99, nothing flushed or unwound):
/// MIRAGE_TEST_CRASH_BEFORE_COMMIT (any value), MIRAGE_TEST_CRASH_AT_STAGE=N and
/// MIRAGE_TEST_CRASH_AT_STEP=N (before staging entry N, before commit step N of an apply),
/// MIRAGE_TEST_CRASH_AT_FILL (any value: a streamed revert's placeholders in place, not filled),
/// MIRAGE_TEST_CRASH_AT_LINK=N (before an OS migration links entry N under /old-root),
/// MIRAGE_TEST_CRASH_AT_REMOVE=N (before entry N of an /old-root/<id> removal goes) and
/// MIRAGE_TEST_CRASH_OLD_ROOT_REPORTED (any value: a removal reported, not yet forgotten).
/// MIRAGE_TEST_HOLD_BEFORE_COMMIT=PREFIX holds the sync there instead (a concurrency test's
/// gate): it creates PREFIX.held and waits up to 60 s for PREFIX.go.
util::CrashHook crash_hook_from_env() {
  auto index_of = [](const char* var) -> std::optional<size_t> {
    const char* v = getenv(var);
    if (!v) return std::nullopt;
    return std::strtoul(v, nullptr, 10);
  };
  const char* before_commit = getenv("MIRAGE_TEST_CRASH_BEFORE_COMMIT");
  bool at_commit = before_commit && *before_commit;
  auto stage = index_of("MIRAGE_TEST_CRASH_AT_STAGE");
  auto step = index_of("MIRAGE_TEST_CRASH_AT_STEP");
  auto link = index_of("MIRAGE_TEST_CRASH_AT_LINK");
  const char* fill_env = getenv("MIRAGE_TEST_CRASH_AT_FILL");
  bool at_fill = fill_env && *fill_env;
  auto remove = index_of("MIRAGE_TEST_CRASH_AT_REMOVE");
  const char* reported_env = getenv("MIRAGE_TEST_CRASH_OLD_ROOT_REPORTED");
  bool reported = reported_env && *reported_env;
  const char* hold_env = getenv("MIRAGE_TEST_HOLD_BEFORE_COMMIT");
  std::string hold = hold_env ? hold_env : "";
  if (!at_commit && !stage && !step && !link && !at_fill && !remove && !reported && hold.empty()) return nullptr;
  return [at_commit, stage, step, link, at_fill, remove, reported, hold](std::string_view point, size_t i) {
    if (point == "before_commit" && !hold.empty()) {
      std::ofstream(hold + ".held").put('\n');
      for (int n = 0; n < 1200 && !std::filesystem::exists(hold + ".go"); ++n)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if ((point == "before_commit" && at_commit) || (point == "apply_stage" && stage == i) ||
        (point == "apply_step" && step == i) || (point == "migrate_link" && link == i) ||
        (point == "stream_fill" && at_fill) || (point == "old_root_remove" && remove == i) ||
        (point == "old_root_reported" && reported))
      ::_exit(99);
  };
}

/// The zstd level of --compression: "auto" is 1 for a local store, where the CPU bounds a
/// first backup, and 3 over the network, where the link does (and the server keeps what
/// came); nullopt when it is neither auto nor a level from -7 to 19.
std::optional<int> compression_level(const std::string& given, const std::string& server) {
  if (given == "auto") return server.rfind("local:", 0) == 0 ? 1 : 3;
  int level = 0;
  auto [end, ec] = std::from_chars(given.data(), given.data() + given.size(), level);
  if (ec != std::errc() || end != given.data() + given.size() || level < -7 || level > 19) return std::nullopt;
  return level;
}

/// A sync's time as its text shows it: "2.6 s" under a minute, "3m05s" above.
std::string took_text(double seconds) {
  if (seconds >= 60) return tool::human_seconds(seconds);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", seconds);
  return buf;
}

/// One sync: its result, printed (in --watch as one JSON line per sync). Returns the exit
/// status; `state_out` and `message_out`, when given, get the device's state and the server's word.
int sync_once(const tool::Common& common_in, const Options& o, std::string* state_out = nullptr,
              std::string* message_out = nullptr) {
  endpoint::CentralizeOptions co;
  co.root = o.root;
  co.device_id = device_id_of(o);
  co.state_dir = state_dir_of(o, co.device_id);
  tool::Common common = endpoint_common(common_in, co.device_id, co.state_dir);
  co.compression_level = *compression_level(o.compression, common.server.empty() ? proto::default_server() : common.server);
  co.threads = o.threads;
  tool::Progress bar(common, "centralize");
  co.progress = [&](const scan::Progress& p) {
    auto state = tool::ProgressState::of_bytes(p.walking ? "scanning" : "uploading", p.bytes_read,
                                               p.walking ? 0 : p.bytes_to_read);  // the total grows while walking
    state.files = p.files;
    state.bytes_sent = p.bytes_sent;
    bar.update(state);
  };
  co.apply_progress = [&](uint64_t done, uint64_t total) {
    bar.update(tool::ProgressState::of_bytes("applying", done, total));
  };
  co.more_connections = tool::connection_factory(common);
  co.crash_point = crash_hook_from_env();
  auto client = tool::connect(common);
  bar.update(tool::ProgressState::of_bytes("scanning", 0, 0));  // at once: the first report comes after 250 ms
  auto result = endpoint::centralize(client, co);
  bar.finish();
  if (state_out) *state_out = result.state;
  if (message_out) *message_out = result.message;
  json doc = result;
  if (o.watch) {
    json line = {{"time", util::rfc3339(util::now_ns())}, {"device_id", result.device_id}, {"state", result.state}};
    if (!doc["snapshot"].is_null()) line["snapshot_id"] = doc["snapshot"]["snapshot_id"];
    if (!doc["order"].is_null()) line["order"] = doc["order"].value("order_id", "");
    if (!result.message.empty()) line["message"] = result.message;
    line["bytes_sent"] = result.stats.bytes_sent;
    line["unreadable"] = result.stats.unreadable;
    line["seconds"] = result.seconds;
    tool::clear_progress_line();
    std::cout << line.dump() << std::endl;
    if (!result.incomplete.empty()) util::warn(result.incomplete);  // the next sync tries again
    return result.state == "accepted" ? 0 : 5;
  }
  tool::print(common, doc, [&](std::ostream& out) {
    if (result.state == "reenroll") {
      out << result.message << "\n";
      return;
    }
    if (result.state != "accepted") {
      out << "device " << result.device_id << " is " << result.state
          << "; an admin must run: mirage-centralize accept " << result.device_id << "\n";
      return;
    }
    const auto& s = result.stats;
    out << "snapshot " << doc["snapshot"]["snapshot_id"].get<std::string>() << " of device " << result.device_id << "\n"
        << "  " << s.files << " files, " << s.dirs << " dirs, " << s.symlinks << " symlinks, "
        << tool::human_bytes(s.bytes) << "\n"
        << "  read " << s.files_read << " files (" << tool::human_bytes(s.bytes_read) << "), new "
        << tool::human_bytes(s.bytes_new) << ", sent " << tool::human_bytes(s.bytes_sent) << " in " << took_text(result.seconds)
        << "\n";
    if (s.unreadable > 0) out << "  " << s.unreadable << " entries could not be read:\n";
    for (size_t i = 0; i < std::min<size_t>(s.unreadable_entries.size(), 10); ++i)
      out << "    " << s.unreadable_entries[i].path << ": " << s.unreadable_entries[i].reason << "\n";
    if (doc.contains("order") && doc["order"].contains("apply")) {
      const auto& ord = doc["order"];
      const auto& a = ord["apply"];
      std::string layers;
      for (const auto& l : ord.value("layers", json::array())) layers += (layers.empty() ? "" : ", ") + l.get<std::string>();
      // A revert names its snapshot and mode; a layer order its layers.
      if (ord.contains("mode"))
        layers = "reverted to snapshot " + ord["snapshot_id"].get<std::string>() + " (" + ord["mode"].get<std::string>() + ")";
      out << "order " << ord["order_id"].get<std::string>() << " carried out: " << layers << "\n"
          << "  written " << a["written"] << ", metadata " << a["metadata"] << ", removed " << a["removed"]
          << ", merged " << a["merged"] << ", set aside " << a["saved_local"] << "; "
          << tool::human_bytes(a["bytes_local"].get<uint64_t>()) << " from this device, "
          << tool::human_bytes(ord["wire_bytes"].get<uint64_t>()) << " over the wire\n"
          << "  protected by snapshot " << doc["protected_by"]["snapshot_id"].get<std::string>() << "\n";
    }
    if (doc.contains("stream") && doc["stream"]["fill"].value("files_total", uint64_t(0)) > 0) {  // a streamed revert's fill
      const auto& f = doc["stream"]["fill"];
      out << "filled " << f.value("files_done", uint64_t(0)) << " placeholders ("
          << tool::human_bytes(f.value("bytes_done", uint64_t(0))) << "), " << f.value("on_demand", uint64_t(0))
          << " first because a program read them\n";
    }
  });
  // The snapshot is committed, but it is not the whole machine: say so in the status.
  if (!result.incomplete.empty()) throw Error(ErrorKind::failed, result.incomplete);
  return result.state == "accepted" ? 0 : 5;
}

std::string seconds_text(double s) {
  std::ostringstream out;
  out << s << " s";
  return out.str();
}

/// Sleeps up to `seconds`, waking early on a signal; false when stopped.
bool nap(double seconds) {
  auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!g_stop && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::min(std::chrono::duration<double>(0.2),
                                         std::chrono::duration<double>(until - std::chrono::steady_clock::now())));
  return !g_stop;
}

/// --watch: a sync now, then one every interval (with jitter, so a fleet does not come
/// in step), and one at once whenever an order is queued for this device (checked every
/// --poll). A pending device syncs again every --poll until an admin accepts it; one
/// awaiting re-enrolment logs once what the admin must run and backs off (--poll doubling
/// up to 5 minutes). Failures are logged and retried with backoff; only a rejection or bad
/// flags stop it (exit 4, 2), and a --root or --ca-file that is not there at the start
/// (3: a typo, not a server away; sync() checks them). SIGINT/SIGTERM stop between syncs.
int watch(const tool::Common& common, const Options& o) {
  tool::on_stop_signals([](int) { g_stop = 1; });
  std::mt19937_64 rng(std::random_device{}());
  std::uniform_real_distribution<double> spread(-o.jitter, o.jitter);
  std::string device = device_id_of(o);
  std::filesystem::path state = state_dir_of(o, device);
  double backoff = 0;
  const auto k_never = std::chrono::steady_clock::now() - std::chrono::hours(2);
  auto last_pending_log = k_never;
  auto log_pending = [&](const std::string& why) {  // at once, then hourly while it lasts
    auto now = std::chrono::steady_clock::now();
    if (now - last_pending_log < std::chrono::hours(1)) return;
    last_pending_log = now;
    util::log(util::LogLevel::info, why + "; syncing again every " + seconds_text(o.poll) + " until accepted");
  };
  // Awaiting re-enrolment only an admin ends (accept --reenroll with the fingerprint the
  // server's message names): said once per message, and asked again less and less often.
  std::string reenroll_said;
  double reenroll_wait = 0;
  while (!g_stop) {
    enum class Outcome { accepted, pending, failed } outcome = Outcome::failed;
    std::string device_state, message;
    try {
      int rc = sync_once(common, o, &device_state, &message);
      outcome = rc == 0 ? Outcome::accepted : Outcome::pending;
      backoff = 0;
      if (device_state == "reenroll") {
        if (message != reenroll_said) util::warn(message + " (asking again less and less often)");
        reenroll_said = message;
        reenroll_wait = std::min(std::max(reenroll_wait * 2, o.poll), std::max(o.poll, std::min(o.interval, 300.0)));
      } else {
        reenroll_said.clear();
        reenroll_wait = 0;
        if (outcome == Outcome::pending) log_pending("device " + device + ": pending (an admin must accept it)");
      }
    } catch (const Error& e) {
      if (e.kind() == ErrorKind::permission || e.kind() == ErrorKind::usage) throw;  // rejected, bad flags: stop
      util::warn(std::string("sync failed: ") + e.what() + " (retrying)");
      backoff = std::min(std::max(backoff * 2, 5.0), o.interval);
    }
    if (outcome == Outcome::accepted) last_pending_log = k_never;
    double wait = reenroll_wait > 0             ? reenroll_wait
                  : outcome == Outcome::pending ? std::min(o.poll, o.interval)
                  : backoff > 0              ? backoff
                                             : o.interval * (1 + spread(rng));
    auto next = std::chrono::steady_clock::now() + std::chrono::duration<double>(wait);
    // Until the next sync, look for orders now and then.
    while (!g_stop && std::chrono::steady_clock::now() < next) {
      double left = std::chrono::duration<double>(next - std::chrono::steady_clock::now()).count();
      if (!nap(std::min(left, o.poll * (1 + spread(rng))))) break;
      if (outcome != Outcome::accepted) continue;
      try {
        auto client = tool::connect(endpoint_common(common, device, state));
        if (client.call("order.pending", {{"device_id", device}})["pending"].get<uint64_t>() > 0) break;
      } catch (const Error& e) {
        util::warn(std::string("order check failed: ") + e.what() + " (the next sync retries)");
      }
    }
  }
  return 0;
}

/// `request`: queue a snapshot order per device; with --wait, until each is done.
int request_snapshots(const tool::Common& common, const Options& o) {
  auto client = tool::connect(common);
  json params = {{"reason", o.reason}};
  if (!o.devices.empty()) params["device_ids"] = client::resolve_devices(client, o.devices);
  if (!o.collections.empty()) params["collections"] = o.collections;
  json r = client.call("snapshot.request", params);
  if (o.wait) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(o.timeout);
    tool::Progress bar(common, "request");
    uint64_t done = 0, total = r["orders"].size();
    for (auto& order : r["orders"]) {
      for (;;) {
        order = client.call("order.get", {{"order_id", order["order_id"]}});
        if (order["state"] != "pending") break;
        bar.update(tool::ProgressState::waiting("for device " + order["device_id"].get<std::string>() + " to take snapshot order " +
                              order["order_id"].get<std::string>() + " on its next sync (" +
                              std::to_string(done) + " of " + std::to_string(total) + " done)"));
        if (std::chrono::steady_clock::now() > deadline)
          throw Error(ErrorKind::unavailable, "order " + order["order_id"].get<std::string>() + " still pending after " +
                                                  std::to_string(int(o.timeout)) + " s (device " +
                                                  order["device_id"].get<std::string>() + " has not synced yet)");
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
      }
      ++done;
    }
    bar.finish();
  }
  tool::print(common, r, [&](std::ostream& out) {
    tool::Table t({"DEVICE", "ORDER", "STATE", "SNAPSHOT"});
    for (const auto& order : r["orders"])
      t.row({tool::cell(order["device_id"]), tool::cell(order["order_id"]), tool::cell(order["state"]),
             order["result"].contains("snapshot_id") ? tool::cell(order["result"]["snapshot_id"]) : "-"});
    t.print(out, "no devices to ask");
    if (!o.wait && !t.empty()) out << "each device takes its order on its next sync (--wait waits for that)\n";
  });
  return 0;
}

int sync(const tool::Common& common, const Options& o) {
  // Settings that are not there are said first (3), before a store, a state directory or
  // a registration is made for them (and --watch does not retry a typo).
  tool::connection_factory(common);  // a --ca-file that is not there
  if (std::error_code ec; !std::filesystem::is_directory(o.root, ec))
    throw Error(ErrorKind::not_found, "root " + o.root + ": no such directory");
  return o.watch ? watch(common, o) : sync_once(common, o);
}

/// Devices as a table; one whose re-enrolment waits shows as "reenroll" with the
/// waiting machine's hostname, time and fingerprint.
void print_devices(const tool::Common& common, const json& devices, const std::string& when_empty) {
  tool::print(common, {{"devices", devices}}, [&](std::ostream& out) {
    tool::Table t({"DEVICE", "STATE", "HOSTNAME", "REGISTERED", "FINGERPRINT"});
    bool waiting = false;
    for (const auto& d : devices) {
      const json& w = d.value("reenroll", json());
      if (w.is_object()) {
        waiting = true;
        std::string fp = w["fingerprint"].get<std::string>();
        if (w.value("contested", 0) > 0) fp += " (contested by " + tool::cell(w["contender_fingerprint"]) + ")";
        t.row({tool::cell(d["device_id"]), "reenroll", tool::cell(w["hostname"]),
               tool::short_time(w["requested_at"].get<std::string>()), fp});
        continue;
      }
      t.row({tool::cell(d["device_id"]), tool::cell(d["state"]), tool::cell(d["hostname"]),
             tool::short_time(d["registered_at"].get<std::string>()), "-"});
    }
    t.print(out, when_empty);
    if (waiting)
      out << "reenroll: enrolled, registered again by a machine without its credential; compare the fingerprint it\n"
             "printed, then: mirage-centralize accept DEVICE --reenroll --fingerprint F (or reject DEVICE --reenroll)\n";
  });
}

/// accept/reject --reenroll: give the device's id to the waiting machine, or drop it.
int reenroll(const tool::Common& common, const Options& o, bool reject) {
  auto client = tool::connect(common);
  json params = {{"device_id", o.device}, {"reject", reject}};
  if (!o.fingerprint.empty()) params["fingerprint"] = o.fingerprint;
  json d = client.call("device.reenroll", params);
  tool::print(common, d, [&](std::ostream& out) {
    if (reject) {
      out << "device " << o.device << ": the registration of machine " << d["fingerprint"].get<std::string>()
          << " was dropped; the device keeps its credential\n";
      return;
    }
    out << "device " << o.device << " re-enrolled: machine " << d["fingerprint"].get<std::string>()
        << " now holds its credential" << (d["revoked"].get<bool>() ? " (the earlier one is revoked)" : "")
        << "; its snapshots, layers and policy are kept\n";
  });
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  tool::keep_freed_memory_for_reuse();
  CLI::App app{"Register this endpoint and upload a snapshot of it", "mirage-centralize"};
  app.set_version_flag("--version", MIRAGE_VERSION);
  Options o;
  tool::Common common;
  tool::add_common(app, common);
  tool::add_progress(app, common);
  app.add_option("--root", o.root, "The endpoint's root directory (default /)");
  app.add_option("--device-id", o.device_id, "Device id (default: DMI UUID, else machine-id)");
  app.add_option("--state", o.state_dir, "Endpoint state directory (files cache)");
  app.add_option("--compression", o.compression,
                 "zstd level -7..19 or auto (1 local, 3 network)")
      ->check([](const std::string& v) { return compression_level(v, "").has_value() ? std::string() : "expected auto or a level from -7 to 19"; });
  app.add_option("--threads", o.threads, "Upload and walk threads (default 2)")->check(CLI::Range(1, 64));
  auto* watch_flag = app.add_flag("--watch", o.watch, "Keep syncing (every --interval, at once on orders)");
  app.add_option("--interval", o.interval, "With --watch: time between syncs (default 60m)")
      ->transform(CLI::AsNumberWithUnit(std::map<std::string, double>{{"s", 1}, {"m", 60}, {"h", 3600}},
                                        CLI::AsNumberWithUnit::CASE_SENSITIVE, "DURATION"))
      ->check(CLI::Range(1.0, 1e7))
      ->needs(watch_flag);
  app.add_option("--poll", o.poll, "With --watch: time between checks for orders (30s)")
      ->transform(CLI::AsNumberWithUnit(std::map<std::string, double>{{"s", 1}, {"m", 60}, {"h", 3600}},
                                        CLI::AsNumberWithUnit::CASE_SENSITIVE, "DURATION"))
      ->check(CLI::Range(0.05, 1e6))
      ->needs(watch_flag);
  app.add_option("--jitter", o.jitter, "With --watch: +- share of the interval (0.1)")->check(CLI::Range(0.0, 0.9))->needs(watch_flag);
  app.fallthrough();

  auto* request = app.add_subcommand("request", "Ask devices for a snapshot now (pinned)");
  request->add_option("--device", o.devices, "Device id, name or hostname (repeatable)");
  request->add_option("--collection", o.collections, "Every device of a collection (repeatable)");
  request->add_option("--reason", o.reason, "Why (kept with the order)");
  request->add_flag("--wait", o.wait, "Wait until every device has taken it");
  request->add_option("--timeout", o.timeout, "With --wait: seconds to wait at most (3600)")->check(CLI::PositiveNumber);

  auto* pending = app.add_subcommand("pending", "List devices waiting to be accepted");
  auto* devices = app.add_subcommand("devices", "List devices");
  devices->add_option("--state", o.state_filter, "Only pending, accepted, rejected, replaced\nor reenroll");
  auto* accept = app.add_subcommand("accept", "Accept a pending device");
  accept->add_option("device", o.device, "Device id, name or hostname")->required();
  auto* reference = accept->add_flag("--reference", o.reference, "Make it a reference device");
  auto* policy = accept->add_option("--policy", o.policy, "Upload policy to give it (default: default)");
  auto* reenroll_flag = accept->add_flag("--reenroll", o.reenroll, "Give an enrolled device's credential to the\nmachine waiting for it (disk loss)")
                            ->excludes(reference)
                            ->excludes(policy);
  accept->add_option("--fingerprint", o.fingerprint, "With --reenroll: the waiting machine's,\nas it printed it")->needs(reenroll_flag);
  auto* reject = app.add_subcommand("reject", "Reject a device; it can no longer upload");
  reject->add_option("device", o.device, "Device id, name or hostname")->required();
  auto* drop_flag = reject->add_flag("--reenroll", o.reenroll, "Drop the registration waiting for\nre-enrolment instead");
  reject->add_option("--fingerprint", o.fingerprint, "With --reenroll: only if it is this machine's")->needs(drop_flag);

  auto list = [&](const std::string& state) {
    auto client = tool::connect(common);
    json params = json::object();
    if (!state.empty()) params["state"] = state;
    json found = client.call("device.list", params)["devices"];
    if (state == "pending") {  // and the enrolled devices a machine asks to be re-enrolled
      json waiting = client.call("device.list", {{"state", "reenroll"}});
      for (const auto& d : waiting["devices"]) found.push_back(d);
    }
    print_devices(common, found,
                  state == "pending" ? "no devices waiting to be accepted" : state.empty() ? "no devices" : "no " + state + " devices");
    return 0;
  };
  auto set_state = [&](const char* method) {
    auto client = tool::connect(common);
    std::string id = client::resolve_device(client, o.device);
    json params = {{"device_id", id}, {"reference", o.reference}};
    if (!o.policy.empty()) params["policy"] = o.policy;
    json d = client.call(method, params);
    tool::print(common, d, [&](std::ostream& out) {
      out << "device " << id << " is " << d["state"].get<std::string>()
          << (d["reference"].get<bool>() ? " (reference)" : "") << "\n";
    });
    return 0;
  };
  return tool::run(argc, argv, app, common,
                   {{request, [&] { return request_snapshots(common, o); }},
                    {pending, [&] { return list("pending"); }},
                    {devices, [&] { return list(o.state_filter); }},
                    {accept, [&] { return o.reenroll ? reenroll(common, o, false) : set_state("device.accept"); }},
                    {reject, [&] { return o.reenroll ? reenroll(common, o, true) : set_state("device.reject"); }},
                    {nullptr, [&] { return sync(common, o); }, true}});
}
