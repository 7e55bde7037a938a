#include "cmd/common/tool.hpp"

#include <signal.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "libmirage/util/fd.hpp"
#include "libmirage/util/json_input.hpp"
#include "libmirage/util/log.hpp"

namespace mirage::tool {

using nlohmann::json;

bool Common::json() const {
  if (output == "json") return true;
  if (output == "text") return false;
  return !::isatty(1);
}

void add_common(CLI::App& app, Common& common) {
  app.add_option("--server", common.server, "Server: local:DIR or http(s)://HOST:PORT")->envname("MIRAGE_SERVER");
  app.add_option("--token", common.token, "Access token for HTTP servers")->envname("MIRAGE_TOKEN");
  app.add_option("--output", common.output, "Output format: json or text")->check(CLI::IsMember({"json", "text"}));
  app.add_option("--ca-file", common.ca_file, "CA certificates to verify https servers");
  app.add_option("--input", "Read flags from a JSON object (FILE or -)")->type_name("FILE");
}

namespace {
/// Paths are made absolute here, once: connections opened later (by upload workers)
/// must not depend on the working directory of that moment.
proto::ConnectOptions connect_options(const Common& common) {
  proto::ConnectOptions o;
  o.server = common.server.empty() ? proto::default_server() : common.server;
  if (o.server.rfind("local:", 0) == 0 && o.server.size() > 6)
    o.server = "local:" + std::filesystem::absolute(o.server.substr(6)).string();
  o.token = common.token;
  if (!common.ca_file.empty()) o.ca_file = std::filesystem::absolute(common.ca_file).string();
  return o;
}
}  // namespace

namespace {
std::unique_ptr<proto::Transport> open_transport(const proto::ConnectOptions& o) {
  if (o.server.rfind("local:", 0) == 0) ::signal(SIGPIPE, SIG_IGN);
  return proto::connect(o);
}
}  // namespace

client::Client connect(const Common& common) { return client::Client(open_transport(connect_options(common))); }

client::ConnectionFactory connection_factory(const Common& common) {
  return [o = connect_options(common)] { return std::make_unique<client::Client>(open_transport(o)); };
}

std::optional<uint64_t> parse_size(const std::string& text) {
  std::string v = text;
  try {
    if (!CLI::AsSizeValue(false)(v).empty()) return std::nullopt;
  } catch (const CLI::ValidationError&) {
    return std::nullopt;
  }
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), value);
  if (ec != std::errc() || end != v.data() + v.size()) return std::nullopt;
  return value;
}

std::vector<std::string> expand_input(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  std::optional<std::string> source;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--input") {
      if (i + 1 >= args.size()) throw Error(ErrorKind::usage, "--input needs FILE or -");
      source = args[++i];
    } else if (args[i].rfind("--input=", 0) == 0) {
      source = args[i].substr(8);
    } else {
      out.push_back(args[i]);
    }
  }
  if (!source) return out;
  json doc = util::read_json_input(*source, "--input");
  if (!doc.is_object()) throw Error(ErrorKind::usage, "--input " + *source + ": expected a JSON object");
  for (const auto& [key, value] : doc.items()) {
    std::string flag = "--" + key;
    for (auto& c : flag)
      if (c == '_') c = '-';
    auto scalar = [&](const json& v) {
      if (v.is_string()) return v.get<std::string>();
      if (v.is_number()) return v.dump();
      throw Error(ErrorKind::usage, "--input: field '" + key + "' must be a string, number, boolean or array");
    };
    if (value.is_null() || (value.is_boolean() && !value.get<bool>())) continue;
    if (value.is_boolean()) {
      out.push_back(flag);
    } else if (value.is_array()) {
      for (const auto& v : value) {
        out.push_back(flag);
        out.push_back(scalar(v));
      }
    } else {
      out.push_back(flag);
      out.push_back(scalar(value));
    }
  }
  return out;
}

namespace {

void report_error(const std::string& tool, bool json_mode, ErrorKind kind, const std::string& message) {
  if (json_mode) {
    json j = {{"error", {{"code", kind_name(kind)}, {"message", message}}}};
    std::cerr << j.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
  } else {
    std::cerr << tool << ": error: " << message << "\n";
  }
}

}  // namespace

int run(int argc, char** argv, CLI::App& app, Common& common, const std::vector<Command>& commands) {
  std::string tool = app.get_name();
  util::set_log_sink([tool, tty = ::isatty(2) != 0](util::LogLevel level, std::string_view msg) {
    if (level == util::LogLevel::progress) {
      if (tty) std::cerr << "\r\033[K" << msg.substr(0, 79) << std::flush;
      return;
    }
    // One write per line: lines of concurrent requests do not interleave.
    std::string line = std::string(tool) + ": " +
                       (level == util::LogLevel::warning ? "warning: " : level == util::LogLevel::debug ? "debug: " : "") +
                       std::string(msg) + "\n";
    std::cerr << line << std::flush;
  });
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    args = expand_input(args);
  } catch (const Error& e) {  // usage (2) for bad JSON, not_found (3) for a missing file
    report_error(tool, common.json(), e.kind(), e.what());
    return e.exit_code();
  }
  std::reverse(args.begin(), args.end());  // CLI11 takes them back to front
  try {
    app.parse(args);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    report_error(tool, common.json(), ErrorKind::usage, e.what());
    std::cerr << "Run with --help for more information.\n";
    return 2;
  }
  try {
    for (const auto& cmd : commands)
      if (cmd.app && cmd.app->parsed()) return cmd.run();
    for (const auto& cmd : commands)
      if (!cmd.app) return cmd.run();
    std::cout << app.help();
    return 2;
  } catch (const Error& e) {
    report_error(tool, common.json(), e.kind(), e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    report_error(tool, common.json(), ErrorKind::failed, e.what());
    return 1;
  }
}

void print(const Common& common, const json& doc, const std::function<void(std::ostream&)>& text) {
  if (common.json() || !text)
    std::cout << doc.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
  else
    text(std::cout);
  std::cout.flush();
}

std::string human_bytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", v, units[u]);
  return buf;
}

Progress::Progress() : m_enabled(::isatty(2)) {}
Progress::~Progress() {
  if (m_shown) std::cerr << "\r\033[K" << std::flush;
}
void Progress::show(const std::string& line) {
  if (!m_enabled) return;
  std::cerr << "\r\033[K" << line.substr(0, 79) << std::flush;
  m_shown = true;
}

void on_stop_signals(void (*handler)(int)) {
  struct sigaction sa {};
  sa.sa_handler = handler;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_UNBLOCK, &stop_signals, nullptr);
}

}  // namespace mirage::tool
