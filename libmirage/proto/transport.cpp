#include "libmirage/proto/transport.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <thread>
#include <utility>

#include "libmirage/util/fd.hpp"
#include "libmirage/util/http_client.hpp"
#include "libmirage/util/log.hpp"
#include "libmirage/util/spawn.hpp"

namespace mirage::proto {

namespace fs = std::filesystem;

std::string default_data_dir() {
  if (const char* home = std::getenv("MIRAGE_HOME"); home && *home) return home;
  if (::geteuid() == 0) return "/var/lib/mirage";
  if (const char* xdg = std::getenv("XDG_DATA_HOME"); xdg && *xdg) return std::string(xdg) + "/mirage";
  const char* home = std::getenv("HOME");
  return std::string(home ? home : ".") + "/.local/share/mirage";
}

std::string default_server() {
  if (const char* s = std::getenv("MIRAGE_SERVER"); s && *s) return s;
  return "local:" + default_data_dir();
}

namespace {

/// The server program named for local: (given, else $MIRAGE_SERVERD), or "".
std::string find_serverd(const std::string& given) {
  if (!given.empty()) return given;
  if (const char* env = std::getenv("MIRAGE_SERVERD"); env && *env) return env;
  return "";
}

/// mirage-serverd beside this executable, else on PATH.
std::string default_serverd() {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    fs::path beside = self.parent_path() / "mirage-serverd";
    if (fs::exists(beside)) return beside.string();
  }
  return "mirage-serverd";  // found on PATH by util::spawn
}

/// The stderr of a local server: its log lines (JSON: it runs with --output json) go to
/// this process's log sink at their level, so that a client in JSON mode writes only
/// JSON to stderr; its error line, and a last plain line (a crash, a loader's message),
/// are kept for the error its exit causes.
class ChildLog {
 public:
  explicit ChildLog(util::Fd fd) : m_fd(std::move(fd)), m_thread([this] { run(); }) {}
  ~ChildLog() { m_thread.join(); }  // the child has exited (its stderr is at EOF) first
  ChildLog(const ChildLog&) = delete;
  ChildLog& operator=(const ChildLog&) = delete;

  /// What the child said last before it exited: ": its error" or "" (waits a little for
  /// the child's last lines).
  std::string last_words() {
    std::unique_lock lock(m_mutex);
    m_done_cv.wait_for(lock, std::chrono::seconds(2), [this] { return m_done; });
    if (!m_error.empty()) return ": " + m_error;
    if (!m_plain.empty()) return ": " + m_plain;
    return "";
  }

 private:
  void run() {
    constexpr size_t k_max_line = 16384;
    std::string pending;
    char buf[4096];
    for (;;) {
      ssize_t n = ::read(m_fd.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      pending.append(buf, static_cast<size_t>(n));
      for (size_t nl; (nl = pending.find('\n')) != std::string::npos;) {
        line(pending.substr(0, std::min(nl, k_max_line)));
        pending.erase(0, nl + 1);
      }
      if (pending.size() > k_max_line) {  // a line without end: its start, the rest dropped
        line(pending.substr(0, k_max_line));
        pending.clear();
      }
    }
    if (!pending.empty()) line(pending);
    std::lock_guard lock(m_mutex);
    m_done = true;
    m_done_cv.notify_all();
  }

  void line(const std::string& text) {
    if (text.empty()) return;
    auto doc = nlohmann::json::parse(text, nullptr, false);
    if (doc.is_object() && doc.size() == 1) {
      auto it = doc.begin();  // (a structured binding of *doc.items().begin() outlives its proxy)
      const std::string key = it.key();
      const auto& body = it.value();
      std::string message = body.is_object() ? body.value("message", std::string()) : std::string();
      if (key == "error") {
        std::lock_guard lock(m_mutex);
        m_error = message;
        return;
      }
      if (key == "warning" || key == "info" || key == "debug") {
        util::log(key == "warning" ? util::LogLevel::warning : key == "info" ? util::LogLevel::info : util::LogLevel::debug,
                  "mirage-serverd: " + message);
        return;
      }
    }
    util::warn("mirage-serverd: " + text);
    std::lock_guard lock(m_mutex);
    m_plain = text;
  }

  util::Fd m_fd;
  std::mutex m_mutex;
  std::condition_variable m_done_cv;
  bool m_done = false;
  std::string m_error, m_plain;
  std::thread m_thread;  // last: started once the members it uses exist
};

/// A put carries 4 MiB of records: through a pipe of the default 64 KiB that is sixty-odd
/// sleeps and wake-ups of each side per batch, a third of a first backup's context switches
/// (and each costs more in a VM). 1 MiB (pipe-max-size's default, so any user may) cuts them
/// sixteenfold. Only a hint: where the limit is lower (a tuned system, a user over its
/// pipe-user-pages quota) the pipe keeps its size and works as before.
void widen_pipe(int fd) { (void)::fcntl(fd, F_SETPIPE_SZ, 1 << 20); }

class StdioTransport : public Transport {
 public:
  StdioTransport(const std::string& exe, const std::string& data) : m_data(data) {
    util::SpawnOptions so;
    so.argv = {exe, "--stdio", "--data", data, "--output", "json"};
    so.in = util::SpawnOptions::Stream::pipe;
    so.out = util::SpawnOptions::Stream::pipe;
    so.err = util::SpawnOptions::Stream::pipe;
    try {
      m_child = util::spawn(so);
    } catch (const Error& e) {
      throw Error(ErrorKind::unavailable, e.what());
    }
    m_log = std::make_unique<ChildLog>(std::move(m_child.err));
    widen_pipe(m_child.in.get());
    widen_pipe(m_child.out.get());
    if (int err = m_child.exec_error()) {
      errno = err;
      throw_errno(ErrorKind::unavailable, "start " + exe);
    }
    m_reader = std::make_unique<FrameReader>(m_child.out.get());
  }

  ~StdioTransport() override {
    m_child.in = util::Fd();  // EOF tells the server to finish
    m_reader.reset();
    m_child.out = util::Fd();
    m_child.wait();
    m_log.reset();
  }

  Reply call(Request request) override {
    std::lock_guard lock(m_mutex);
    auto header = encode_request_header(request);
    try {
      util::write_all(m_child.in.get(), header, "request to mirage-serverd");
      util::write_all(m_child.in.get(), request.binary, "request to mirage-serverd");
    } catch (const Error& e) {
      throw exited(e);
    }
    std::optional<Frame> reply;
    try {
      reply = m_reader->next();
    } catch (const Error& e) {  // killed in the middle of its reply
      if (e.kind() != ErrorKind::unavailable) throw;
      throw exited(e);
    }
    if (!reply)
      throw Error(ErrorKind::unavailable, "local server for " + m_data + " exited without replying" + m_log->last_words());
    return parse_reply(std::move(*reply));
  }

  std::string describe() const override { return "local:" + m_data; }

 private:
  /// The child died under a request (its pipe broke, or its reply stopped mid-frame).
  Error exited(const Error& cause) const {
    return Error(ErrorKind::unavailable,
                 "local server for " + m_data + " exited" + m_log->last_words() + " (" + cause.what() + ")");
  }

  std::string m_data;
  util::Child m_child;
  std::unique_ptr<ChildLog> m_log;
  std::unique_ptr<FrameReader> m_reader;
  std::mutex m_mutex;
};

class HttpTransport : public Transport {
 public:
  HttpTransport(std::string url, std::string token, std::string ca_file, double connect_timeout, double idle_timeout)
      : m_url(std::move(url)),
        m_token(std::move(token)),
        m_http(util::HttpClientOptions{std::move(ca_file), static_cast<long>(connect_timeout * 1000),
                                       std::max(1L, static_cast<long>(idle_timeout + 0.5))}) {
    while (!m_url.empty() && m_url.back() == '/') m_url.pop_back();
  }

  Reply call(Request request) override {
    auto body = encode_request(request);
    std::vector<std::string> headers = {"Content-Type: application/x-mirage-frame",
                                        // The server sets the body limit by method before it reads the body.
                                        "X-Mirage-Method: " + request.method};
    if (!m_token.empty()) headers.push_back("Authorization: Bearer " + m_token);
    const long idle_s = m_http.options().idle_timeout_s;
    // A server too busy to take the body now says so with 503 and Retry-After, before it
    // did anything: send the same request again after that pause, for up to the idle
    // timeout in all, then give up as unavailable (exit 75).
    long waited = 0;
    for (;;) {
      util::HttpResponse response;
      try {
        response = m_http.post(m_url + "/v1/rpc", body, headers);
      } catch (const Error& e) {
        if (e.reason() == util::k_http_timeout)
          throw Error(e.kind(), "server " + m_url + ": " + e.what() + " (connect timeout " +
                                    std::to_string(m_http.options().connect_timeout_ms) + " ms, idle timeout " +
                                    std::to_string(idle_s) + " s: see MIRAGE_CONNECT_TIMEOUT, MIRAGE_IDLE_TIMEOUT)");
        if (e.reason() == util::k_untrusted_certificate)
          throw Error(e.kind(),
                      "server " + m_url + ": its TLS certificate is not trusted (" + e.what() +
                          "): give the CA certificate that signed it with --ca-file FILE or MIRAGE_CA_FILE=FILE",
                      e.reason());
        throw Error(e.kind(), "server " + m_url + ": " + e.what());
      }
      if (response.status == 503 && response.retry_after > 0 && waited + response.retry_after <= idle_s) {
        ::sleep(static_cast<unsigned>(response.retry_after));
        waited += response.retry_after;
        continue;
      }
      try {
        return parse_reply(decode_frame(response.body));
      } catch (const Error&) {
        throw Error(ErrorKind::unavailable,
                    "server " + m_url + ": HTTP " + std::to_string(response.status) + " without a valid reply");
      }
    }
  }

  std::string describe() const override { return m_url; }

 private:
  std::string m_url, m_token;
  util::HttpClient m_http;
};

/// A timeout in seconds: `given` when not negative, else the environment variable, else
/// `fallback`. Throws Error(usage) for a value that is not a positive number.
double timeout_setting(double given, const char* env, double fallback) {
  std::string what = env;
  if (given < 0) {
    const char* v = std::getenv(env);
    if (!v || !*v) return fallback;
    char* end = nullptr;
    given = std::strtod(v, &end);
    if (end == v || *end != '\0') given = 0;
    what.append("=").append(v);  // not += "=" + …: GCC 12 at -O3 warns -Wrestrict falsely
  }
  if (!(given > 0) || given > 1e6) throw Error(ErrorKind::usage, what + ": expected a number of seconds (0 < s <= 1e6)");
  return given;
}

}  // namespace

std::unique_ptr<Transport> connect(const ConnectOptions& options) {
  const std::string& s = options.server;
  if (s.rfind("local:", 0) == 0) {
    std::string dir = s.substr(6);
    if (dir.empty()) throw Error(ErrorKind::usage, "server " + s + ": local: needs a directory");
    std::string exe = find_serverd(options.serverd_exe);
    if (options.in_process && exe.empty()) return options.in_process(fs::absolute(dir).string());
    if (exe.empty()) exe = default_serverd();
    return std::make_unique<StdioTransport>(exe, fs::absolute(dir).string());
  }
  if (s.rfind("http://", 0) == 0 || s.rfind("https://", 0) == 0)
    return std::make_unique<HttpTransport>(s, options.token, options.ca_file,
                                           timeout_setting(options.connect_timeout, "MIRAGE_CONNECT_TIMEOUT", 60),
                                           timeout_setting(options.idle_timeout, "MIRAGE_IDLE_TIMEOUT", 300));
  throw Error(ErrorKind::usage, "server '" + s + "': expected local:DIR, http://HOST:PORT or https://HOST:PORT");
}

}  // namespace mirage::proto
