#include "cmd/common/tool.hpp"

#include <malloc.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <set>
#include <sstream>
#include <thread>

#include "libmirage/server/loopback.hpp"
#include "libmirage/util/clock.hpp"
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
  app.add_option("--ca-file", common.ca_file, "CA certificates to verify https servers")->envname("MIRAGE_CA_FILE");
  app.add_option("--input", "Read flags from a JSON object (FILE or -)")->type_name("FILE");
}

void add_progress(CLI::App& app, Common& common) {
  app.add_option("--progress", common.progress, "Progress on stderr: auto, text, json or none")
      ->check(CLI::IsMember({"auto", "text", "json", "none"}));
}

std::string shown(std::string_view text) {
  auto byte = [&](size_t i) { return i < text.size() ? static_cast<unsigned char>(text[i]) : 0u; };
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    unsigned c = byte(i);
    // The bytes to escape here: C0 controls and DEL; C1 controls in UTF-8 (U+0080-U+009F,
    // CSI among them); the bidi marks and overrides (U+200E/F, U+202A-E, U+2066-9) that
    // make a name read as another.
    size_t n = c < 0x20 || c == 0x7f ? 1 : 0;
    if (c == 0xc2 && byte(i + 1) >= 0x80 && byte(i + 1) <= 0x9f) n = 2;
    if (c == 0xe2 && byte(i + 1) == 0x80 && (byte(i + 2) == 0x8e || byte(i + 2) == 0x8f ||
                                             (byte(i + 2) >= 0xaa && byte(i + 2) <= 0xae)))
      n = 3;
    if (c == 0xe2 && byte(i + 1) == 0x81 && byte(i + 2) >= 0xa6 && byte(i + 2) <= 0xa9) n = 3;
    if (n == 0) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    for (size_t k = 0; k < n; ++k, ++i) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\%03o", byte(i));
      out += buf;
    }
  }
  return out;
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
  // local:DIR is served in this process: no server process, no pipe, one catalog for
  // all the command's connections (MIRAGE_SERVERD still names a server to run instead).
  o.in_process = [create = common.create_store](const std::string& dir) { return server::open_in_process(dir, {}, create); };
  if (!common.ca_file.empty()) {
    o.ca_file = std::filesystem::absolute(common.ca_file).string();
    // Named here, not left to curl ("problem with the SSL CA cert"), which reads as an
    // unreachable server (75) and has --watch retry a typo for ever.
    if (o.server.rfind("https://", 0) == 0 && ::access(o.ca_file.c_str(), R_OK) != 0)
      throw_errno(errno == ENOENT || errno == ENOTDIR ? ErrorKind::not_found : ErrorKind::permission,
                  "--ca-file " + common.ca_file);
  }
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
  std::set<std::string> given;  // the flags of the command line, to refuse a second value
  for (const auto& a : out)
    if (a.rfind("--", 0) == 0 && a.size() > 2) given.insert(a.substr(0, a.find('=')));
  for (const auto& [key, value] : doc.items()) {
    std::string flag = "--" + key;
    for (auto& c : flag)
      if (c == '_') c = '-';
    if (given.count(flag))
      throw Error(ErrorKind::usage, flag + " is given both on the command line and in --input " + *source + "; give it once");
    auto scalar = [&](const json& v) {
      // A command line cannot hold a NUL byte, and a path that does is cut short by the
      // system (--to "a\u0000b" would write into a).
      if (v.is_string() && v.get_ref<const std::string&>().find('\0') != std::string::npos)
        throw Error(ErrorKind::usage, "--input: field '" + key + "' contains a NUL byte");
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

// The terminal line a progress display holds: one for the process, so that whatever
// prints next (the summary on stdout, a warning) first erases it.
std::mutex g_line_mutex;
bool g_line_shown = false;

size_t terminal_width() {
  winsize ws{};
  if (::ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 10) return ws.ws_col;
  return 80;
}

/// Redraws the progress line (the caller holds g_line_mutex), cut to the terminal's
/// width without splitting a UTF-8 character.
void draw_line_locked(std::string text) {
  size_t width = terminal_width() - 1;
  if (text.size() > width) {
    size_t cut = width;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
    text.resize(cut);
  }
  std::cerr << "\r\033[K" << text << std::flush;
  g_line_shown = !text.empty();
}

void report_error(const std::string& tool, bool json_mode, const Error& e) {
  if (json_mode) {
    json err = {{"code", kind_name(e.kind())}, {"message", e.what()}};
    if (!e.reason().empty()) err["reason"] = e.reason();
    std::cerr << json{{"error", err}}.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
  } else {
    std::cerr << tool << ": error: " << shown(e.what()) << "\n";
  }
}

/// Optimal string alignment distance: a swap of two neighbours is one edit, the usual typo.
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i)
    for (size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.size()][b.size()];
}

std::string command_path(const CLI::App* app) {
  std::string path;
  for (; app; app = app->get_parent()) path = app->get_name() + (path.empty() ? "" : " " + path);
  return path;
}

std::vector<std::string> long_flags(const std::vector<CLI::App*>& chain) {
  std::vector<std::string> out;
  for (const auto* app : chain)
    for (const auto* opt : app->get_options())
      for (const auto& name : opt->get_lnames()) out.push_back("--" + name);
  return out;
}

/// After CLI11 refused `args`: the first flag or command no app on the way knows, named
/// with the nearest known one; nullopt when every word is known (CLI11's message is
/// then the better one). Walks the words as CLI11 does: a subcommand's options, then
/// its parents' (fallthrough).
std::optional<std::string> diagnose(CLI::App& app, const std::vector<std::string>& args) {
  std::vector<CLI::App*> chain{&app};
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") break;
    if (a.size() > 1 && a[0] == '-') {
      std::string name = a.substr(0, a.find('='));
      const CLI::Option* opt = nullptr;
      for (auto it = chain.rbegin(); it != chain.rend() && !opt; ++it) opt = (*it)->get_option_no_throw(name);
      if (!opt) {
        if (name.rfind("--", 0) != 0) return std::nullopt;  // -abc: short flags, CLI11 knows best
        auto near = nearest(name, long_flags(chain));
        return "unknown flag " + name + (chain.size() > 1 ? " for '" + command_path(chain.back()) + "'" : "") +
               (near ? " (did you mean " + *near + "?)" : "");
      }
      if (a.find('=') == std::string::npos && opt->get_type_size_max() > 0) ++i;  // its value
      continue;
    }
    CLI::App* cur = chain.back();
    auto subs = cur->get_subcommands([](CLI::App*) { return true; });
    auto sub = std::find_if(subs.begin(), subs.end(), [&](CLI::App* s) { return s->check_name(a); });
    if (sub != subs.end()) {
      chain.push_back(*sub);
      continue;
    }
    bool takes_words = !cur->get_options([](const CLI::Option* o) { return o->get_positional(); }).empty();
    if (subs.empty() || takes_words) continue;
    std::vector<std::string> names;
    for (const auto* s : subs) names.push_back(s->get_name());
    auto near = nearest(a, names);
    return "unknown command '" + a + "' for '" + command_path(cur) + "'" + (near ? " (did you mean '" + *near + "'?)" : "");
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> nearest(const std::string& given, const std::vector<std::string>& known) {
  std::optional<std::string> best;
  size_t best_distance = std::max<size_t>(2, given.size() / 3) + 1;  // a typo, not another word
  for (const auto& k : known) {
    if (k.empty()) continue;
    size_t d = edit_distance(given, k);
    if (k.rfind(given, 0) == 0 && given.size() >= 3) d = std::min<size_t>(d, 1);  // an abbreviation
    if (d < best_distance) {
      best_distance = d;
      best = k;
    }
  }
  return best;
}

int run(int argc, char** argv, CLI::App& app, Common& common, const std::vector<Command>& commands) {
  std::string tool = app.get_name();
  util::set_log_sink([tool, &common](util::LogLevel level, std::string_view msg) {
    if (level == util::LogLevel::progress) {
      if (progress_mode(common) != ProgressMode::text || !::isatty(2)) return;
      std::lock_guard lock(g_line_mutex);
      draw_line_locked(std::string(msg));
      return;
    }
    clear_progress_line();
    if (common.json()) {  // stderr stays JSON lines
      const char* kind = level == util::LogLevel::info ? "info" : level == util::LogLevel::debug ? "debug" : "warning";
      json line = {{kind, {{"message", msg}}}};
      std::cerr << line.dump(-1, ' ', false, json::error_handler_t::replace) + "\n" << std::flush;
      return;
    }
    // One write per line: lines of concurrent requests do not interleave.
    std::string line = std::string(tool) + ": " +
                       (level == util::LogLevel::warning ? "warning: " : level == util::LogLevel::debug ? "debug: " : "") +
                       shown(msg) + "\n";
    std::cerr << line << std::flush;
  });
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    args = expand_input(args);
  } catch (const Error& e) {  // usage (2) for bad JSON, not_found (3) for a missing file
    report_error(tool, common.json(), e);
    return e.exit_code();
  }
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 takes them back to front
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    auto why = diagnose(app, args);
    report_error(tool, common.json(), Error(ErrorKind::usage, why ? *why : std::string(e.what())));
    if (!common.json()) std::cerr << "Run with --help for more information.\n";
    return 2;
  }
  try {
    auto start = [&](const Command& cmd) {
      common.create_store = cmd.creates_store;
      return cmd.run();
    };
    for (const auto& cmd : commands)
      if (cmd.app && cmd.app->parsed()) return start(cmd);
    for (const auto& cmd : commands)
      if (!cmd.app) return start(cmd);
    std::cout << app.help();
    return 2;
  } catch (const Error& e) {
    clear_progress_line();
    report_error(tool, common.json(), e);
    return e.exit_code();
  } catch (const std::exception& e) {
    clear_progress_line();
    report_error(tool, common.json(), Error(ErrorKind::failed, e.what()));
    return 1;
  }
}

void print(const Common& common, const json& doc, const std::function<void(std::ostream&)>& text) {
  clear_progress_line();
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

std::optional<int64_t> time_flag(const std::string& flag, const std::string& value, bool upper) {
  if (value.empty()) return std::nullopt;
  int64_t now = util::now_ns();
  auto t = upper ? util::parse_time_before(value, now) : util::parse_time_after(value, now);
  if (!t)
    throw Error(ErrorKind::usage, flag + " " + value +
                                      ": not a time (YYYY-MM-DD[ HH:MM[:SS]], now, today, yesterday, or an age "
                                      "such as 2h, 3d, 1w)");
  return t;
}

std::string human_seconds(double seconds) {
  auto s = static_cast<uint64_t>(std::max(0.0, seconds) + 0.5);
  char buf[32];
  if (s < 60)
    std::snprintf(buf, sizeof buf, "%us", unsigned(s));
  else if (s < 3600)
    std::snprintf(buf, sizeof buf, "%um%02us", unsigned(s / 60), unsigned(s % 60));
  else if (s < 86400)
    std::snprintf(buf, sizeof buf, "%uh%02um", unsigned(s / 3600), unsigned(s % 3600 / 60));
  else
    std::snprintf(buf, sizeof buf, "%llud%02uh", static_cast<unsigned long long>(s / 86400), unsigned(s % 86400 / 3600));
  return buf;
}

std::string short_time(const std::string& t) {
  if (t.empty()) return "-";
  if (t.size() < 19 || t[10] != 'T') return t;
  return t.substr(0, 10) + " " + t.substr(11, 8);
}

std::string cell(const json& v) {
  if (v.is_string()) return v.get<std::string>().empty() ? "-" : v.get<std::string>();
  if (v.is_null()) return "-";
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  if (v.is_array()) {
    std::string out;
    for (const auto& item : v) out += (out.empty() ? "" : ",") + cell(item);
    return out.empty() ? "-" : out;
  }
  return v.dump();
}

void print_fields(std::ostream& out, const json& doc, int indent) {
  std::string pad(size_t(indent), ' ');
  if (!doc.is_object()) {
    out << pad << cell(doc) << "\n";
    return;
  }
  for (const auto& [key, value] : doc.items()) {
    std::string name = key;
    std::replace(name.begin(), name.end(), '_', ' ');
    out << pad << name << ":";
    if (value.is_object()) {
      out << (value.empty() ? " none\n" : "\n");
      print_fields(out, value, indent + 2);
    } else if (value.is_array()) {
      bool scalars = std::all_of(value.begin(), value.end(), [](const json& v) { return !v.is_structured(); });
      std::string line;
      for (const auto& v : value) line += (line.empty() ? "" : ", ") + cell(v);
      if (value.empty()) {
        out << " none\n";
      } else if (scalars && line.size() + pad.size() + name.size() < 70) {
        out << " " << line << "\n";
      } else {
        out << "\n";
        for (const auto& v : value) {
          if (v.is_structured()) {
            out << pad << "  -\n";
            print_fields(out, v, indent + 4);
          } else {
            out << pad << "  " << cell(v) << "\n";
          }
        }
      }
    } else {
      out << " " << cell(value) << "\n";
    }
  }
}

namespace {
/// Characters a terminal shows for `text` (UTF-8 continuation bytes take no column).
size_t display_width(const std::string& text) {
  size_t n = 0;
  for (char c : text)
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
  return n;
}
}  // namespace

Table::Table(std::vector<Column> columns) : m_columns(std::move(columns)) {}

Table& Table::row(std::vector<std::string> cells) {
  cells.resize(m_columns.size());
  for (auto& c : cells)
    for (auto& ch : c)
      if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) ch = '?';  // a newline must not break the row
  m_rows.push_back(std::move(cells));
  return *this;
}

void Table::print(std::ostream& out, const std::string& when_empty) const {
  if (m_rows.empty() && !when_empty.empty()) {
    out << when_empty << "\n";
    return;
  }
  print_lines(out, true);
}

void Table::print_rows(std::ostream& out) const { print_lines(out, false); }

void Table::print_lines(std::ostream& out, bool header) const {
  std::vector<size_t> width(m_columns.size());
  for (size_t c = 0; c < m_columns.size(); ++c) {
    width[c] = display_width(m_columns[c].header);
    for (const auto& r : m_rows) width[c] = std::max(width[c], display_width(r[c]));
  }
  auto line = [&](auto&& text_of) {
    std::string s;
    for (size_t c = 0; c < m_columns.size(); ++c) {
      const std::string& t = text_of(c);
      std::string pad(width[c] - display_width(t), ' ');
      bool last = c + 1 == m_columns.size();
      if (c) s += "  ";
      s += m_columns[c].align == Align::right ? pad + t : t + (last ? "" : pad);
    }
    while (!s.empty() && s.back() == ' ') s.pop_back();
    out << s << "\n";
  };
  if (header) line([&](size_t c) -> const std::string& { return m_columns[c].header; });
  for (const auto& r : m_rows) line([&](size_t c) -> const std::string& { return r[c]; });
}

ProgressMode progress_mode(const Common& common) {
  if (common.progress == "json") return ProgressMode::json;
  if (common.progress == "text") return ProgressMode::text;
  if (common.progress == "none") return ProgressMode::none;
  return ::isatty(2) && !common.json() ? ProgressMode::text : ProgressMode::none;
}

void clear_progress_line() {
  std::lock_guard lock(g_line_mutex);
  if (!g_line_shown) return;
  std::cerr << "\r\033[K" << std::flush;
  g_line_shown = false;
}

Progress::Progress(const Common& common, std::string action)
    : m_mode(progress_mode(common)),
      m_tty(::isatty(2) != 0),
      m_action(std::move(action)),
      m_start(std::chrono::steady_clock::now()),
      m_last(m_start),
      m_phase_start(m_start) {}

Progress::~Progress() { finish(); }

void Progress::update(const ProgressState& state) {
  if (m_mode == ProgressMode::none) return;
  std::lock_guard lock(m_mutex);
  if (m_finished) return;
  auto now = std::chrono::steady_clock::now();
  if (m_state && m_state->phase != state.phase) {  // a rate and an ETA per phase
    m_phase_start = now;
    m_phase_bytes = state.bytes;
    m_phase_files = state.files;
  }
  m_state = state;
  // A terminal line a few times a second; a log or a JSON consumer once a second.
  auto every = m_mode == ProgressMode::text && m_tty ? std::chrono::milliseconds(250) : std::chrono::milliseconds(1000);
  if (m_any && now - m_last < every) return;
  m_any = true;
  m_last = now;
  emit(state, std::chrono::duration<double>(now - m_start).count(), std::chrono::duration<double>(now - m_phase_start).count());
}

void Progress::finish() {
  if (m_mode == ProgressMode::none) return;
  std::lock_guard lock(m_mutex);
  if (m_finished) return;
  m_finished = true;
  auto now = std::chrono::steady_clock::now();
  if (m_mode == ProgressMode::json && m_state)
    emit(*m_state, std::chrono::duration<double>(now - m_start).count(),
         std::chrono::duration<double>(now - m_phase_start).count());
  if (m_mode == ProgressMode::text && m_tty) clear_progress_line();
}

void Progress::emit(const ProgressState& in, double elapsed, double in_phase) {
  ProgressState s = in;
  if (s.bytes_total) s.bytes = std::min(s.bytes, s.bytes_total);  // a total is a bound, never passed
  if (s.files_total) s.files = std::min(s.files, s.files_total);
  std::optional<double> fraction, remaining;
  double rate = 0;  // bytes (or files) a second in this phase
  if (s.bytes_total) {
    fraction = double(s.bytes) / double(s.bytes_total);
    if (in_phase >= 1 && s.bytes > m_phase_bytes) rate = double(s.bytes - m_phase_bytes) / in_phase;
    if (rate > 0) remaining = double(s.bytes_total - s.bytes) / rate;
  } else if (s.files_total) {
    fraction = double(s.files) / double(s.files_total);
    double files_rate = in_phase >= 1 && s.files > m_phase_files ? double(s.files - m_phase_files) / in_phase : 0;
    if (files_rate > 0) remaining = double(s.files_total - s.files) / files_rate;
  } else if (in_phase >= 1 && s.bytes > m_phase_bytes) {
    rate = double(s.bytes - m_phase_bytes) / in_phase;
  }
  if (m_mode == ProgressMode::json) {
    json line = {{"type", "progress"}, {"action", m_action}, {"phase", s.phase}, {"seconds_elapsed", elapsed},
                 {"files_done", s.files}, {"bytes_done", s.bytes}};
    if (s.files_total) line["total_files"] = s.files_total;
    if (s.bytes_total) line["total_bytes"] = s.bytes_total;
    if (s.bytes_sent) line["bytes_sent"] = *s.bytes_sent;
    if (fraction) line["percent_done"] = *fraction;
    if (remaining) line["seconds_remaining"] = *remaining;
    if (!s.detail.empty()) line["message"] = s.detail;
    clear_progress_line();
    std::cerr << line.dump(-1, ' ', false, json::error_handler_t::replace) << "\n" << std::flush;
    return;
  }
  std::string text = s.phase.empty() ? m_action : s.phase;
  if (s.bytes || s.bytes_total) {
    text += " " + human_bytes(s.bytes);
    if (s.bytes_total) text += " of " + human_bytes(s.bytes_total);
  }
  if (fraction) text += " (" + std::to_string(int(*fraction * 100)) + "%)";
  if (s.files || s.files_total)
    text += ", " + std::to_string(s.files) + (s.files_total ? " of " + std::to_string(s.files_total) : "") + " files";
  if (s.bytes_sent) text += ", sent " + human_bytes(*s.bytes_sent);
  if (rate > 0) text += ", " + human_bytes(uint64_t(rate)) + "/s";
  if (remaining) text += ", ETA " + human_seconds(*remaining);
  if (!s.detail.empty()) text += (text.empty() ? "" : ": ") + s.detail;
  if (!m_tty) {  // a log: whole lines
    std::cerr << m_action << ": " << text << "\n" << std::flush;
    return;
  }
  std::lock_guard lock(g_line_mutex);
  draw_line_locked(text);
}

void keep_freed_memory_for_reuse() {
  // A fixed mmap threshold also stops glibc from moving its own (up to 32 MiB) as it goes.
  ::mallopt(M_MMAP_THRESHOLD, 32 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 64 << 20);
  // Each growth of the heap asks for 64 MiB more than it needs, kept when freed: a 2 GB
  // restore to tmpfs took 77-81k -> 55-58k page faults and 5-8% less CPU.
  ::mallopt(M_TOP_PAD, 64 << 20);
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

json wait_for_order(client::Client& client, const std::string& order_id, double timeout, Progress& bar,
                    const std::string& what) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout);
  for (;;) {
    json o = client.call("order.get", {{"order_id", order_id}});
    if (o["state"] != "pending") return o;
    bar.update(ProgressState::waiting("for device " + o["device_id"].get<std::string>() + " " + what));
    if (std::chrono::steady_clock::now() > deadline)
      throw Error(ErrorKind::unavailable, "order " + order_id + " still pending after " + std::to_string(int(timeout)) + " s");
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
}

}  // namespace mirage::tool
