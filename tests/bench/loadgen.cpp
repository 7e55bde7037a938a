// mirage-loadgen (a benchmark tool, not installed): many endpoints in one process, each
// syncing over the real protocol (HTTPS, its own device credential, register, order
// check, have/need, uploads, commit) through the library's own centralize flow, so the
// clients cost one process instead of hundreds and hide the server less.
//   mirage-loadgen --server URL --ca-file CA --token ADMIN --dir DIR
//                  [--endpoints N] [--concurrency C] [--files F] [--rounds R] [--change P]
//                  [--server-pid PID]
// DIR gets an endpoint tree and a state directory per endpoint. Round 0 enrolls every
// endpoint (register, accept by the admin token, first sync); rounds 1..R change P% of
// each endpoint's files, then sync every endpoint, C at a time. Prints one JSON line per
// round: syncs, its own nice value, seconds, sync p50/p99, server CPU seconds (from /proc with --server-pid),
// the server's handler-wait p99 (from /metrics), and the endpoints one server sustains at
// one sync an hour (completed syncs per hour).
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include "libmirage/client/client.hpp"
#include "libmirage/endpoint/centralize.hpp"
#include "libmirage/endpoint/identity.hpp"
#include "libmirage/proto/transport.hpp"
#include "libmirage/util/error.hpp"

using namespace mirage;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

struct Options {
  std::string server, ca_file, token, dir;
  int server_pid = 0;
  size_t endpoints = 300, concurrency = 300, files = 50, rounds = 2;
  double change = 1;
};

std::unique_ptr<client::Client> connect(const Options& o, const std::string& token) {
  proto::ConnectOptions c;
  c.server = o.server;
  c.token = token;
  c.ca_file = o.ca_file;
  return std::make_unique<client::Client>(proto::connect(c));
}

void write_random(const fs::path& p, std::mt19937_64& rnd) {
  std::uniform_int_distribution<size_t> size(1024, 8192);
  std::string data(size(rnd), '\0');
  for (auto& c : data) c = static_cast<char>(rnd());
  std::ofstream(p, std::ios::binary) << data;
}

fs::path tree_of(const Options& o, size_t i) { return fs::path(o.dir) / "ep" / std::to_string(i); }
fs::path state_of(const Options& o, size_t i) { return fs::path(o.dir) / "state" / std::to_string(i); }
std::string device_of(size_t i) { return "lg-" + std::to_string(i); }

void make_tree(const Options& o, size_t i) {
  std::mt19937_64 rnd(i);
  auto root = tree_of(o, i);
  fs::create_directories(root / "etc");
  fs::create_directories(root / "home/user/docs");
  for (size_t f = 0; f < o.files; ++f)
    write_random(root / (f % 3 ? "home/user/docs" : "etc") / ("f" + std::to_string(f)), rnd);
}

void change_tree(const Options& o, size_t i, size_t round) {
  std::mt19937_64 rnd(i * 1000003 + round);
  size_t n = std::max<size_t>(1, static_cast<size_t>(o.files * o.change / 100));
  for (size_t k = 0; k < n; ++k) {
    size_t f = rnd() % o.files;
    write_random(tree_of(o, i) / (f % 3 ? "home/user/docs" : "etc") / ("f" + std::to_string(f)), rnd);
  }
}

/// One endpoint's sync, on its own credential once it has one.
double sync(const Options& o, size_t i) {
  endpoint::CentralizeOptions co;
  co.root = tree_of(o, i);
  co.device_id = device_of(i);
  co.state_dir = state_of(o, i);
  co.threads = 1;
  std::string token;
  if (fs::exists(co.state_dir / "credential")) token = "mdc_" + co.device_id + "." + endpoint::device_secret(co.state_dir);
  auto c = connect(o, token);
  auto t0 = std::chrono::steady_clock::now();
  auto r = endpoint::centralize(*c, co);
  (void)r;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Runs fn(i) for every endpoint, `concurrency` at a time; returns each one's seconds.
std::vector<double> each(const Options& o, const std::function<double(size_t)>& fn) {
  std::atomic<size_t> next{0};
  std::vector<double> seconds(o.endpoints);
  std::mutex errors_mutex;
  std::vector<std::string> errors;
  std::vector<std::thread> threads;
  for (size_t t = 0; t < std::min(o.concurrency, o.endpoints); ++t)
    threads.emplace_back([&] {
      for (size_t i; (i = next++) < o.endpoints;) {
        // A refusal to retry (503 busy) or a dropped connection is tried again, as --watch does.
        for (int attempt = 0;; ++attempt) {
          try {
            seconds[i] = fn(i);
            break;
          } catch (const Error& e) {
            if (e.kind() == ErrorKind::unavailable && attempt < 10) continue;
            std::lock_guard lock(errors_mutex);
            errors.push_back(device_of(i) + ": " + e.what());
            break;
          }
        }
      }
    });
  for (auto& t : threads) t.join();
  if (!errors.empty()) throw Error(ErrorKind::failed, std::to_string(errors.size()) + " syncs failed, first: " + errors[0]);
  return seconds;
}

double server_cpu(int pid) {
  if (!pid) return 0;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(in)), {});
  std::istringstream fields(s.substr(s.rfind(')') + 2));
  std::string f;
  double ticks = 0;
  for (int k = 3; k <= 15 && fields >> f; ++k)
    if (k == 14 || k == 15) ticks += std::stod(f);
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

/// The handler-wait histogram's cumulative counts by bound, from /metrics.
std::vector<std::pair<double, double>> wait_histogram(const Options& o) {
  // /metrics is not RPC: fetched with curl, as Prometheus would.
  std::string cmd = "curl -sf --cacert '" + o.ca_file + "' '" + o.server + "/metrics'";
  std::vector<std::pair<double, double>> out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char line[512];
  const std::string key = "mirage_http_handler_wait_seconds_bucket{le=\"";
  while (fgets(line, sizeof line, p)) {
    std::string l(line);
    if (l.rfind(key, 0) != 0) continue;
    auto q = l.find('"', key.size());
    std::string le = l.substr(key.size(), q - key.size());
    double bound = le == "+Inf" ? 1e9 : std::stod(le);
    out.emplace_back(bound, std::stod(l.substr(l.find("} ") + 2)));
  }
  pclose(p);
  return out;
}

/// The smallest bound under which 99% of the requests between two scrapes waited.
double wait_p99(const std::vector<std::pair<double, double>>& before, const std::vector<std::pair<double, double>>& after) {
  if (after.empty() || before.size() != after.size()) return -1;
  double total = after.back().second - before.back().second;
  for (size_t k = 0; k < after.size(); ++k)
    if (after[k].second - before[k].second >= 0.99 * total) return after[k].first;
  return -1;
}

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

int run(const Options& o) {
  fs::create_directories(fs::path(o.dir) / "state");
  fs::permissions(fs::path(o.dir) / "state", fs::perms::owner_all, fs::perm_options::replace);
  for (size_t i = 0; i < o.endpoints; ++i) make_tree(o, i);
  auto admin = connect(o, o.token);
  // Round 0: register (pending), accepted by the admin, then the first full sync.
  each(o, [&](size_t i) { return sync(o, i); });
  for (size_t i = 0; i < o.endpoints; ++i) admin->call("device.accept", {{"device_id", device_of(i)}});
  for (size_t round = 0; round <= o.rounds; ++round) {
    if (round > 0)
      for (size_t i = 0; i < o.endpoints; ++i) change_tree(o, i, round);
    auto hist0 = wait_histogram(o);
    double cpu0 = server_cpu(o.server_pid);
    auto t0 = std::chrono::steady_clock::now();
    auto seconds = each(o, [&](size_t i) { return sync(o, i); });
    double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double cpu = server_cpu(o.server_pid) - cpu0;
    double per_hour = static_cast<double>(o.endpoints) / wall * 3600;
    json line = {{"round", round},
                 {"kind", round == 0 ? "first sync" : "sync, " + std::to_string(o.change) + "% of files changed"},
                 {"endpoints_at_once", std::min(o.concurrency, o.endpoints)},
                 {"client_nice", getpriority(PRIO_PROCESS, 0)},
                 {"syncs", o.endpoints},
                 {"seconds", wall},
                 {"sync_p50_seconds", quantile(seconds, 0.5)},
                 {"sync_p99_seconds", quantile(seconds, 0.99)},
                 {"handler_wait_p99_le_seconds", wait_p99(hist0, wait_histogram(o))},
                 {"server_cpu_seconds", cpu},
                 {"server_cpu_ms_per_sync", cpu * 1000 / static_cast<double>(o.endpoints)},
                 {"endpoints_at_one_sync_per_hour", per_hour}};
    if (cpu > 0) line["endpoints_by_server_cpu_2_cores"] = static_cast<double>(o.endpoints) / cpu * 3600 * 2;
    std::cout << line.dump() << std::endl;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Many endpoints in one process against one mirage-serverd (a benchmark)"};
  Options o;
  app.add_option("--server", o.server, "https://HOST:PORT")->required();
  app.add_option("--ca-file", o.ca_file, "CA of the server's certificate")->required();
  app.add_option("--token", o.token, "An admin token (accepts the endpoints)")->required();
  app.add_option("--dir", o.dir, "Where the endpoints' trees and states go")->required();
  app.add_option("--endpoints", o.endpoints, "Endpoints simulated");
  app.add_option("--concurrency", o.concurrency, "Syncs at once");
  app.add_option("--files", o.files, "Files per endpoint (1-8 KiB each)");
  app.add_option("--rounds", o.rounds, "Rounds of changed syncs after the first");
  app.add_option("--change", o.change, "Percent of each endpoint's files changed per round");
  app.add_option("--server-pid", o.server_pid, "The server's pid, for its CPU time");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::cerr << "mirage-loadgen: " << e.what() << "\n";
    return 1;
  }
}
