#pragma once
// Plumbing shared by every executable: common flags, --input expansion, the one catch
// site that maps errors to exit codes, output rendering, progress on stderr.
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "libmirage/client/client.hpp"

namespace mirage::tool {

struct Common {
  std::string server;
  std::string token;
  std::string output;  ///< "json", "text" or empty (JSON unless stdout is a terminal)
  std::string ca_file;
  bool json() const;
};

/// Adds --server, --token, --output, --ca-file (and documents --input) to `app`.
void add_common(CLI::App& app, Common& common);
/// Connects to common.server (default: $MIRAGE_SERVER, else the embedded local store).
/// For local: SIGPIPE is ignored first (a local server that exits must fail the write to
/// its pipe, not kill this process): the library installs no signal handler.
client::Client connect(const Common& common);
/// A factory of further connections to the same server.
client::ConnectionFactory connection_factory(const Common& common);

/// A subcommand and what it runs; the tool's main is a table of these.
struct Command {
  CLI::App* app;  ///< nullptr for the tool's default action (no subcommand)
  std::function<int()> run;
};

/// Parses argv (after expanding --input FILE|- into flags), runs the chosen command,
/// and maps every outcome to an exit code: help/version 0, parse errors 2, Error its
/// kind, anything else 1. In JSON mode errors go to stderr as {"error":{...}}.
int run(int argc, char** argv, CLI::App& app, Common& common, const std::vector<Command>& commands);

/// Prints `doc` as one JSON document, or through `text` on a terminal.
void print(const Common& common, const nlohmann::json& doc, const std::function<void(std::ostream&)>& text);

/// A size as the executables' size flags take it (CLI11's: 1K = 1024, "64KiB", "0x100K");
/// nullopt when malformed or out of range. What server::Limits::set reads sizes with.
std::optional<uint64_t> parse_size(const std::string& text);

/// Runs `handler` on SIGINT and SIGTERM, and unblocks both: a mask inherited from the
/// starter (a supervisor, a CI runner) may block them, and a blocked SIGTERM stays
/// pending for ever.
void on_stop_signals(void (*handler)(int));

/// Human-readable byte count ("1.5 GiB").
std::string human_bytes(uint64_t bytes);

/// A one-line progress display on stderr, shown only when stderr is a terminal.
class Progress {
 public:
  Progress();
  ~Progress();
  void show(const std::string& line);

 private:
  bool m_enabled;
  bool m_shown = false;
};

/// Expands --input into flags: each field of the JSON object becomes --field (with
/// '_' as '-'); strings and numbers give a value, true a bare flag, arrays repeat.
/// Throws Error(usage) on malformed JSON or a field that is not a scalar or array.
std::vector<std::string> expand_input(const std::vector<std::string>& args);

}  // namespace mirage::tool
