// mirage-serverd: the headless server (HTTP, or stdio for the embedded default).
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <iostream>
#include <optional>

#include "libmirage/proto/transport.hpp"
#include "libmirage/server/registry.hpp"
#include "libmirage/server/routes.hpp"
#include "libmirage/server/service.hpp"
#include "libmirage/util/log.hpp"
#include "cmd/common/tool.hpp"

using namespace mirage;

namespace {

struct Options {
  std::string data;
  std::string listen = "0.0.0.0:8000";
  std::string tls_cert, tls_key;
  bool stdio = false;
  std::vector<std::string> volumes;
  double gc_interval = 86400;
  size_t threads = server::HttpOptions{}.threads;
  int read_timeout = server::HttpOptions{}.read_timeout;
  size_t max_connections = server::HttpOptions{}.max_connections;
  uint64_t max_body_memory = server::HttpOptions{}.max_body_memory;
  std::vector<std::string> limits;  ///< --limit NAME=VALUE, in order (a later one wins)
  std::string log_level = "info";
};

util::LogLevel log_level(const std::string& name) {
  if (name == "error") return util::LogLevel::error;
  if (name == "warn") return util::LogLevel::warning;
  if (name == "debug") return util::LogLevel::debug;
  return util::LogLevel::info;
}

/// The request limits: the defaults, then each --limit; body-wait follows
/// --read-timeout unless set. Throws Error(usage) for a bad --limit.
server::Limits request_limits(const Options& o) {
  server::Limits l;
  for (const auto& spec : o.limits) l.set(spec, tool::parse_size);
  if (!l.was_set("body-wait")) l.body_wait = static_cast<uint64_t>(o.read_timeout);
  return l;
}

/// The HTTP settings of the dedicated flags (as `limits` lists them).
server::HttpOptions http_settings(const Options& o) {
  server::HttpOptions h;
  h.gc_interval = o.gc_interval;
  h.threads = o.threads;
  h.read_timeout = o.read_timeout;
  h.max_connections = o.max_connections;
  h.max_body_memory = o.max_body_memory;
  return h;
}

int list_limits(const Options& o, const tool::Common& common) {
  nlohmann::json rows = server::limits_report(request_limits(o), http_settings(o));
  tool::print(common, {{"limits", rows}}, [&](std::ostream& out) {
    out << std::left << std::setw(17) << "NAME" << std::setw(12) << "VALUE" << std::setw(10) << "DEFAULT" << "BOUNDS\n";
    for (const auto& r : rows) {
      auto unit = r["unit"].get<std::string>() == "bytes" ? server::LimitUnit::bytes : server::LimitUnit::count;
      out << std::setw(17) << r["name"].get<std::string>() << std::setw(12)
          << server::format_limit(r["value"].get<uint64_t>(), unit) << std::setw(10)
          << server::format_limit(r["default"].get<uint64_t>(), unit) << r["bounds"].get<std::string>() << "\n";
    }
  });
  return 0;
}

/// The method registry: as JSON, its rows; as text, the role matrix of the man page
/// (man/mirage-serverd.1 holds this very output; tests/e2e/man-role-matrix.sh checks).
int list_methods(const tool::Common& common) {
  nlohmann::json rows = server::method_table();
  tool::print(common, {{"methods", rows}}, [&](std::ostream& out) {
    out << std::left << std::setw(27) << "METHOD" << std::setw(9) << "ROLES" << std::setw(5) << "DEV" << std::setw(5)
        << "ANON" << std::setw(9) << "LOCK" << std::setw(8) << "BODY" << "AUDIT\n";
    for (const auto& r : rows) {
      std::string method = r["method"].get<std::string>();
      if (!r["when"].is_null()) method += " (" + r["when"].get<std::string>() + ")";
      std::string roles;
      for (const char* role : {"admin", "image-manager", "protection-manager", "helpdesk"}) {
        bool has = std::find(r["roles"].begin(), r["roles"].end(), role) != r["roles"].end();
        roles += std::string(roles.empty() ? "" : " ") + (has ? char(std::toupper(role[0])) : '-');
      }
      std::string body = r["body_limit"].get<std::string>();
      out << std::setw(27) << method << std::setw(9) << roles << std::setw(5) << (r["device"].get<bool>() ? "yes" : "no")
          << std::setw(5) << (r["anonymous"].get<bool>() ? "yes" : "no") << std::setw(9)
          << r["concurrency"].get<std::string>() << std::setw(8) << body.substr(0, body.find("-body"))
          << r["audit"].get<std::string>() << "\n";
    }
  });
  return 0;
}

/// Adds the --volume directories the catalog does not have yet.
void add_volumes(server::Service& service, const Options& o) {
  for (const auto& v : o.volumes) service.ensure_volume(std::filesystem::absolute(v).lexically_normal().string());
}

std::string data_dir(const Options& o) { return o.data.empty() ? proto::default_data_dir() : o.data; }

/// The running HTTP server's stop function, for the signal handlers (set before they are).
std::function<void()> g_stop;
std::atomic<bool> g_stop_ready{false};

int serve(const Options& o) {
  util::set_log_level(log_level(o.log_level));
  server::Limits limits = request_limits(o);
  if (o.stdio) {
    tool::keep_freed_memory_for_reuse();  // a client's uploads come through in MiB frames
    std::optional<server::Service> service;
    try {
      service.emplace(data_dir(o), true, limits);
      add_volumes(*service, o);
    } catch (const Error& e) {
      // The client waits for a reply: it gets this error, with its kind, as the reply
      // to each request (so a damaged store is 6 there, not "server unreachable").
      return server::refuse_stdio(e, 0, 1);
    }
    return server::serve_stdio(*service, 0, 1);
  }
  auto colon = o.listen.rfind(':');
  if (colon == std::string::npos || colon == 0) throw Error(ErrorKind::usage, "--listen " + o.listen + ": expected HOST:PORT");
  server::HttpOptions h = http_settings(o);
  h.host = o.listen.substr(0, colon);
  std::string port = o.listen.substr(colon + 1);
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(port) < 1 || std::stoi(port) > 65535)
    throw Error(ErrorKind::usage, "--listen " + o.listen + ": the port must be a number from 1 to 65535");
  h.port = std::stoi(port);
  if (o.tls_cert.empty() != o.tls_key.empty()) throw Error(ErrorKind::usage, "--tls-cert and --tls-key go together");
  h.tls_cert = o.tls_cert;
  h.tls_key = o.tls_key;
  h.on_listen = [&](const std::string& where) {
    std::cerr << "mirage-serverd: serving " << data_dir(o) << " on " << (h.tls_cert.empty() ? "http://" : "https://")
              << where << "\n";
  };
  // SIGINT/SIGTERM stop serving (the server returns, so the catalog closes cleanly).
  h.on_stop = [](std::function<void()> stop) {
    if (!stop) {
      g_stop_ready = false;
      return;
    }
    g_stop = std::move(stop);
    g_stop_ready = true;
    tool::on_stop_signals([](int) {
      if (g_stop_ready) g_stop();
    });
  };
  server::Service service(data_dir(o), false, limits);
  add_volumes(service, o);
  server::serve_http(service, h, server::default_routes(service, h));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  ::umask(077);  // the catalog, packs and logs are this user's alone (0600, directories 0700)
  CLI::App app{"Mirage server: keeps every endpoint's CVD, serves HTTP or stdio", "mirage-serverd"};
  app.set_version_flag("--version", MIRAGE_VERSION);
  Options o;
  tool::Common common;
  app.add_option("--data", o.data, "Data directory (default: $MIRAGE_HOME)");
  app.add_option("--listen", o.listen, "HOST:PORT to serve HTTP on (default 0.0.0.0:8000)");
  app.add_option("--tls-cert", o.tls_cert, "TLS certificate (PEM) for HTTPS");
  app.add_option("--tls-key", o.tls_key, "TLS private key (PEM) for HTTPS");
  app.add_flag("--stdio", o.stdio, "Serve one client on stdin/stdout");
  app.add_option("--volume", o.volumes, "Add a storage volume directory (repeatable)");
  app.add_option("--http-threads", o.threads, "Handler threads started up front")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--max-connections", o.max_connections, "Requests handled at once at most")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app.add_option("--read-timeout", o.read_timeout, "Seconds a connection may be silent")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  app.add_option("--max-body-memory", o.max_body_memory, "Request bytes in memory at once (256M)")
      ->transform(CLI::AsSizeValue(false))
      ->check(CLI::Range(uint64_t(1) << 20, uint64_t(1) << 40))
      ->option_text("SIZE");
  app.add_option("--gc-interval", o.gc_interval, "Time between automatic GC runs (24h; 0: off)")
      ->transform(CLI::AsNumberWithUnit(std::map<std::string, double>{{"s", 1}, {"m", 60}, {"h", 3600}, {"d", 86400}},
                                        CLI::AsNumberWithUnit::CASE_SENSITIVE, "DURATION"))
      ->check(CLI::Range(0.0, 1e9));
  app.add_option("--limit", o.limits, "Set a limit, e.g. upload-body=80M (repeatable)")
      ->option_text("NAME=VALUE");
  app.add_option("--log-level", o.log_level, "error, warn, info (default: logs requests), debug")
      ->check(CLI::IsMember({"error", "warn", "info", "debug"}));
  app.add_option("--output", common.output, "Output format: json or text")->check(CLI::IsMember({"json", "text"}));
  app.fallthrough();
  auto* init = app.add_subcommand("init", "Create the data directory, print the admin token");
  init->add_option("--data", o.data, "Data directory (default: $MIRAGE_HOME)");
  auto* repair = app.add_subcommand("repair", "Index the packs anew (a lost catalog)");
  repair->add_option("--data", o.data, "Data directory (default: $MIRAGE_HOME)");
  auto* limits = app.add_subcommand("limits", "List each limit: value, default, what it bounds");
  auto* methods = app.add_subcommand("methods", "List each method: roles, lock, body limit, audit");
  return tool::run(argc, argv, app, common,
                   {{repair,
                     [&] {
                       nlohmann::json r = server::repair_data_dir(data_dir(o));
                       tool::print(common, r, [&](std::ostream& out) {
                         out << "read " << r["packs_scanned"] << " packs (" << r["packs_added"]
                             << " not in the catalog), indexed " << r["chunks_indexed"] << " chunks, dropped "
                             << r["entries_dropped"] << " index entries\n";
                         if (r.contains("admin_token"))
                           out << "new admin token (shown once): " << r["admin_token"].get<std::string>() << "\n";
                       });
                       return r["check"]["ok"].get<bool>() ? 0 : 6;
                     }},
                    {limits, [&] { return list_limits(o, common); }},
                    {methods, [&] { return list_methods(common); }},
                    {init,
                     [&] {
                       std::string token = server::init_data_dir(data_dir(o));
                       tool::print(common, {{"admin_token", token}, {"data", data_dir(o)}}, [&](std::ostream& out) {
                         out << "initialized " << data_dir(o) << "\nadmin token (shown once): " << token << "\n";
                       });
                       return 0;
                     }},
                    {nullptr,
                     [&] {
                       // Serving prints no result: its log (to a terminal, a journal, the
                       // stderr of the client that spawned it) stays text unless asked.
                       if (common.output.empty()) common.output = "text";
                       return serve(o);
                     }}});
}
