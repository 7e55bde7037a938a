#include "libmirage/proto/transport.hpp"

#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <utility>

#include "libmirage/util/fd.hpp"
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

std::string find_serverd(const std::string& given) {
  if (!given.empty()) return given;
  if (const char* env = std::getenv("MIRAGE_SERVERD"); env && *env) return env;
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    fs::path beside = self.parent_path() / "mirage-serverd";
    if (fs::exists(beside)) return beside.string();
  }
  return "mirage-serverd";  // found on PATH by util::spawn
}

class StdioTransport : public Transport {
 public:
  StdioTransport(const std::string& exe, const std::string& data) : m_data(data) {
    util::SpawnOptions so;
    so.argv = {exe, "--stdio", "--data", data};
    so.in = util::SpawnOptions::Stream::pipe;
    so.out = util::SpawnOptions::Stream::pipe;
    try {
      m_child = util::spawn(so);
    } catch (const Error& e) {
      throw Error(ErrorKind::unavailable, e.what());
    }
    if (int err = m_child.exec_error()) {
      errno = err;
      throw_errno(ErrorKind::unavailable, "start " + exe);
    }
    m_reader = std::make_unique<FrameReader>(m_child.out.get());
    ::signal(SIGPIPE, SIG_IGN);
  }

  ~StdioTransport() override {
    m_child.in = util::Fd();  // EOF tells the server to finish
    m_reader.reset();
    m_child.out = util::Fd();
    m_child.wait();
  }

  Reply call(const Request& request) override {
    std::lock_guard lock(m_mutex);
    auto header = encode_request_header(request);
    try {
      util::write_all(m_child.in.get(), header, "request to mirage-serverd");
      util::write_all(m_child.in.get(), request.binary, "request to mirage-serverd");
    } catch (const Error& e) {
      throw Error(ErrorKind::unavailable, std::string(e.what()) + " (local server for " + m_data + " exited)");
    }
    auto reply = m_reader->next();
    if (!reply) throw Error(ErrorKind::unavailable, "local server for " + m_data + " exited without replying");
    return parse_reply(std::move(*reply));
  }

  std::string describe() const override { return "local:" + m_data; }

 private:
  std::string m_data;
  util::Child m_child;
  std::unique_ptr<FrameReader> m_reader;
  std::mutex m_mutex;
};

size_t collect(char* ptr, size_t size, size_t nmemb, void* userdata) {
  auto* out = static_cast<std::vector<uint8_t>*>(userdata);
  out->insert(out->end(), ptr, ptr + size * nmemb);
  return size * nmemb;
}

class HttpTransport : public Transport {
 public:
  HttpTransport(std::string url, std::string token, std::string ca_file, double connect_timeout, double idle_timeout)
      : m_url(std::move(url)),
        m_token(std::move(token)),
        m_ca(std::move(ca_file)),
        m_connect_ms(static_cast<long>(connect_timeout * 1000)),
        m_idle_s(std::max(1L, static_cast<long>(idle_timeout + 0.5))) {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    while (!m_url.empty() && m_url.back() == '/') m_url.pop_back();
  }
  ~HttpTransport() override {
    for (auto* h : m_free) curl_easy_cleanup(h);
  }

  Reply call(const Request& request) override {
    auto body = encode_request(request);
    // A server too busy to take the body now says so with 503 and Retry-After, before it
    // did anything: send the same request again after that pause, for up to the idle
    // timeout in all, then give up as unavailable (exit 75).
    long waited = 0;
    for (;;) {
      std::vector<uint8_t> response;
      auto [status, retry_after] = perform(request.method, body, response);
      if (status == 503 && retry_after > 0 && waited + retry_after <= m_idle_s) {
        ::sleep(static_cast<unsigned>(retry_after));
        waited += retry_after;
        continue;
      }
      try {
        return parse_reply(decode_frame(response));
      } catch (const Error&) {
        throw Error(ErrorKind::unavailable, "server " + m_url + ": HTTP " + std::to_string(status) + " without a valid reply");
      }
    }
  }

  std::string describe() const override { return m_url; }

 private:
  /// One POST of `body`; the reply's bytes go to `response`. Returns the HTTP status and
  /// the Retry-After seconds (0 when absent); a transport failure throws.
  std::pair<long, long> perform(const std::string& method, const std::vector<uint8_t>& body, std::vector<uint8_t>& response) {
    CURL* h = take();
    curl_easy_reset(h);
    std::string endpoint = m_url + "/v1/rpc";
    curl_easy_setopt(h, CURLOPT_URL, endpoint.c_str());
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, reinterpret_cast<const char*>(body.data()));
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &response);
    // The TLS handshake counts: a busy server takes a queued connection's handshake only
    // when one of its threads frees, so allow a burst of a fleet some time.
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, m_connect_ms);
    // Idle: less than one byte a second for the whole window (a server that accepted and
    // never answers). A long upload or reply keeps bytes moving, so it is not cut.
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, m_idle_s);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    if (!m_ca.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, m_ca.c_str());
    curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, "Content-Type: application/x-mirage-frame");
    // The server sets the body limit by method before it reads the body.
    std::string method_header = "X-Mirage-Method: " + method;
    headers = curl_slist_append(headers, method_header.c_str());
    std::string auth = "Authorization: Bearer " + m_token;
    if (!m_token.empty()) headers = curl_slist_append(headers, auth.c_str());
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    CURLcode rc = curl_easy_perform(h);
    curl_slist_free_all(headers);
    long status = 0;
    curl_off_t retry_after = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(h, CURLINFO_RETRY_AFTER, &retry_after);
    give(h);
    if (rc != CURLE_OK) {
      // Only a certificate that fails verification is a refusal; a handshake cut short (a
      // server restarting, a connection reset) is transient, and --watch retries it.
      ErrorKind kind = (rc == CURLE_SSL_CACERT || rc == CURLE_PEER_FAILED_VERIFICATION) ? ErrorKind::permission
                                                                                      : ErrorKind::unavailable;
      if (rc == CURLE_OPERATION_TIMEDOUT)
        throw Error(kind, "server " + m_url + ": " + curl_easy_strerror(rc) + " (connect timeout " +
                              std::to_string(m_connect_ms) + " ms, idle timeout " + std::to_string(m_idle_s) +
                              " s: see MIRAGE_CONNECT_TIMEOUT, MIRAGE_IDLE_TIMEOUT)");
      throw Error(kind, "server " + m_url + ": " + curl_easy_strerror(rc));
    }
    return {status, static_cast<long>(retry_after)};
  }

  CURL* take() {
    std::lock_guard lock(m_mutex);
    if (!m_free.empty()) {
      CURL* h = m_free.back();
      m_free.pop_back();
      return h;
    }
    CURL* h = curl_easy_init();
    if (!h) throw Error(ErrorKind::failed, "curl: cannot create a handle");
    return h;
  }
  void give(CURL* h) {
    std::lock_guard lock(m_mutex);
    m_free.push_back(h);
  }

  std::string m_url, m_token, m_ca;
  long m_connect_ms, m_idle_s;
  std::mutex m_mutex;
  std::vector<CURL*> m_free;
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
    return std::make_unique<StdioTransport>(find_serverd(options.serverd_exe), fs::absolute(dir).string());
  }
  if (s.rfind("http://", 0) == 0 || s.rfind("https://", 0) == 0)
    return std::make_unique<HttpTransport>(s, options.token, options.ca_file,
                                           timeout_setting(options.connect_timeout, "MIRAGE_CONNECT_TIMEOUT", 60),
                                           timeout_setting(options.idle_timeout, "MIRAGE_IDLE_TIMEOUT", 300));
  throw Error(ErrorKind::usage, "server '" + s + "': expected local:DIR, http://HOST:PORT or https://HOST:PORT");
}

}  // namespace mirage::proto
