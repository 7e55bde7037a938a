#pragma once
// Plumbing shared by every executable: common flags, --input expansion, the one catch
// site that maps errors to exit codes, output rendering (tables, sizes, times), progress
// on stderr.
#include <chrono>
#include <functional>
#include <mutex>
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
  std::string progress = "auto";  ///< auto, text, json or none (see progress_mode)
  /// The embedded default (local:DIR) is made when missing; otherwise (the default: a
  /// command that reads, or changes what must exist already) a missing one is not found,
  /// and a mistyped MIRAGE_HOME gets no store made for it. Set from Command::creates_store.
  bool create_store = false;
  bool json() const;
};

/// Adds --server, --token, --output, --ca-file (also $MIRAGE_CA_FILE) (and documents
/// --input) to `app`.
void add_common(CLI::App& app, Common& common);
/// Adds --progress to `app`: for the tools that report progress (restore, capture,
/// centralize, assign).
void add_progress(CLI::App& app, Common& common);
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
  /// It may be the first command on a new embedded store (a sync, a capture, a policy,
  /// collection, token or volume made before any device): sets Common::create_store.
  bool creates_store = false;
};

/// Parses argv (after expanding --input FILE|- into flags), runs the chosen command,
/// and maps every outcome to an exit code: help/version 0, parse errors 2 (an unknown
/// flag or command named, with the nearest known one), Error its kind, anything else 1.
/// In JSON mode stderr carries JSON only: the error as {"error":{...}}, warnings as
/// {"warning":{"message"}} lines.
int run(int argc, char** argv, CLI::App& app, Common& common, const std::vector<Command>& commands);

/// Prints `doc` as one JSON document, or through `text` on a terminal (or with
/// --output text); clears a progress line first.
void print(const Common& common, const nlohmann::json& doc, const std::function<void(std::ostream&)>& text);

/// A size as the executables' size flags take it (CLI11's: 1K = 1024, "64KiB", "0x100K");
/// nullopt when malformed or out of range. What server::Limits::set reads sizes with.
std::optional<uint64_t> parse_size(const std::string& text);

/// Runs `handler` on SIGINT and SIGTERM, and unblocks both: a mask inherited from the
/// starter (a supervisor, a CI runner) may block them, and a blocked SIGTERM stays
/// pending for ever.
void on_stop_signals(void (*handler)(int));

/// For a process that moves a backup's data in MiB buffers (mirage-centralize, and
/// mirage-serverd --stdio on the other end of its pipe): glibc's allocator keeps up to
/// 64 MiB of freed memory instead of giving it back at once. Each 4 MiB batch was
/// otherwise handed back to the kernel when freed and faulted in again, page by page,
/// when the next one was allocated (half of a first backup's page faults). Process-wide,
/// so called by a main, never by libmirage; not by the long-running HTTP server.
void keep_freed_memory_for_reuse();

/// A time flag's value as ns since the epoch (nullopt when empty): a date or time, or one
/// relative to now as --snapshot takes it (now, today, yesterday, 2h, 3d, 1w). `upper`:
/// an upper bound (find --older: the end of that day), else a lower one (find --newer,
/// events --since: its start). Malformed: a usage error naming `flag`.
std::optional<int64_t> time_flag(const std::string& flag, const std::string& value, bool upper);

/// Text for a terminal or a log: control bytes (a name's ESC, a newline) as \ooo, so a
/// name from a snapshot can neither drive the terminal nor forge a line.
std::string shown(std::string_view text);

/// Human-readable byte count ("1.5 GiB").
std::string human_bytes(uint64_t bytes);
/// A duration as "45s", "3m05s", "2h07m", "3d04h".
std::string human_seconds(double seconds);
/// An RFC 3339 time as a table shows it: "2026-12-03 07:51:28" (UTC, whole seconds);
/// "-" for an empty one; anything else unchanged.
std::string short_time(const std::string& rfc3339);
/// A JSON value as a table cell: strings as they are, null and "" as "-", numbers,
/// true/false as yes/no, arrays joined with ",".
std::string cell(const nlohmann::json& value);

/// A JSON document for a reader (`policy show`): "key: value" lines, '_' as ' ' in keys,
/// nested objects indented, short lists of scalars on one line, long ones one item a
/// line, an empty list as "none".
void print_fields(std::ostream& out, const nlohmann::json& doc, int indent = 0);

enum class Align { left, right };
struct Column {
  Column(const char* h) : header(h) {}  // NOLINT: implicit, so {"NAME", ...} reads well
  Column(std::string h, Align a = Align::left) : header(std::move(h)), align(a) {}
  std::string header;
  Align align = Align::left;
};

/// The one text table of every list: a header row, columns two spaces apart and as wide
/// as their widest cell (counted in UTF-8 characters; control characters print as '?'),
/// numeric columns (Align::right) right-aligned, no trailing blanks.
///   tool::Table t({"DEVICE", "STATE", {"FILES", tool::Align::right}});
///   t.row({id, state, std::to_string(files)});
///   t.print(out, "no devices");
class Table {
 public:
  explicit Table(std::vector<Column> columns);
  /// Adds a row; missing cells at the end are empty.
  Table& row(std::vector<std::string> cells);
  bool empty() const { return m_rows.empty(); }
  size_t size() const { return m_rows.size(); }
  /// Prints the table; with no rows, `when_empty` as a line instead (when given).
  void print(std::ostream& out, const std::string& when_empty = "") const;
  /// Prints the rows only (a stream's later batches, under the header printed first).
  void print_rows(std::ostream& out) const;

 private:
  void print_lines(std::ostream& out, bool header) const;
  std::vector<Column> m_columns;
  std::vector<std::vector<std::string>> m_rows;
};

/// Where progress goes. auto: a redrawn line on stderr when it is a terminal and the
/// output is text, else nothing. text: that line (on a terminal) or a line per second
/// (elsewhere). json: a JSON line on stderr about once a second, {"type":"progress",...}.
enum class ProgressMode { none, text, json };
ProgressMode progress_mode(const Common& common);

/// One report of a long operation. A total of 0 means not known (yet).
struct ProgressState {
  std::string phase;  ///< what it does now: "scanning", "restoring", "waiting", ...
  uint64_t files = 0, files_total = 0;
  uint64_t bytes = 0, bytes_total = 0;
  std::optional<uint64_t> bytes_sent;  ///< for uploads
  std::string detail;                  ///< e.g. what --wait waits for

  /// A phase that counts bytes against a total (0: not known).
  static ProgressState of_bytes(std::string phase, uint64_t bytes, uint64_t total) {
    ProgressState s;
    s.phase = std::move(phase);
    s.bytes = bytes;
    s.bytes_total = total;
    return s;
  }
  /// Waiting for something that `detail` names ("for device pc-bob to ...").
  static ProgressState waiting(std::string detail) {
    ProgressState s;
    s.phase = "waiting";
    s.detail = std::move(detail);
    return s;
  }
};

/// The progress of one operation on stderr (see ProgressMode): throttled (text 4 times,
/// JSON once a second), never past its total, with the rate and an ETA once a total is
/// known. The line is cleared before anything else is printed (tool::print, warnings)
/// and when it goes. Thread-safe.
class Progress {
 public:
  Progress(const Common& common, std::string action);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  void update(const ProgressState& state);
  /// The last state goes out (a JSON line), the text line is cleared.
  void finish();

 private:
  void emit(const ProgressState& state, double elapsed, double in_phase);
  ProgressMode m_mode;
  bool m_tty;
  std::string m_action;
  std::chrono::steady_clock::time_point m_start, m_last, m_phase_start;
  uint64_t m_phase_bytes = 0, m_phase_files = 0;  ///< done when the phase began: the rate counts from there
  bool m_any = false, m_finished = false;
  std::optional<ProgressState> m_state;
  std::mutex m_mutex;
};

/// Waits (polling order.get) until order `order_id` is no longer pending and returns it,
/// saying on `bar` what it waits for (`what`: "to carry out order X", after "for device D ").
/// Error(unavailable) when it is still pending after `timeout` seconds.
nlohmann::json wait_for_order(client::Client& client, const std::string& order_id, double timeout, Progress& bar,
                              const std::string& what);

/// Erases a progress line still on the terminal (stdout and stderr share it). Called by
/// print() and the log sink; a tool that writes stdout itself calls it first.
void clear_progress_line();

/// The known name nearest to `given` by edit distance, when near enough to be a typo.
std::optional<std::string> nearest(const std::string& given, const std::vector<std::string>& known);

/// Expands --input into flags: each field of the JSON object becomes --field (with
/// '_' as '-'); strings and numbers give a value, true a bare flag, arrays repeat.
/// Throws Error(usage) on malformed JSON, a field that is not a scalar or array, or a
/// flag that is also on the command line (naming it).
std::vector<std::string> expand_input(const std::vector<std::string>& args);

}  // namespace mirage::tool
