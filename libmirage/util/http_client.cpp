#include "libmirage/util/http_client.hpp"

#include <curl/curl.h>

#include "libmirage/util/dynlib.hpp"
#include "libmirage/util/error.hpp"
#include "libmirage/util/pool.hpp"

namespace mirage::util {

namespace {

// libcurl's functions, loaded on first use (see dynlib.hpp for why), typed by curl.h.
struct Curl {
  DynLib lib{"libcurl.so.4"};
  MIRAGE_DYNLIB_FUNCTION(global_init, curl_global_init);
  MIRAGE_DYNLIB_FUNCTION(easy_init, curl_easy_init);
  MIRAGE_DYNLIB_FUNCTION(easy_cleanup, curl_easy_cleanup);
  MIRAGE_DYNLIB_FUNCTION(easy_reset, curl_easy_reset);
  MIRAGE_DYNLIB_FUNCTION(easy_setopt, curl_easy_setopt);
  MIRAGE_DYNLIB_FUNCTION(easy_perform, curl_easy_perform);
  MIRAGE_DYNLIB_FUNCTION(easy_getinfo, curl_easy_getinfo);
  MIRAGE_DYNLIB_FUNCTION(easy_strerror, curl_easy_strerror);
  MIRAGE_DYNLIB_FUNCTION(slist_append, curl_slist_append);
  MIRAGE_DYNLIB_FUNCTION(slist_free_all, curl_slist_free_all);
};

// Loaded once and kept for the process's life: never closed under a thread still in it.
// A failed load throws and is tried again by the next call.
const Curl& curl() {
  static const Curl* api = [] {
    auto* c = new Curl;
    c->global_init(CURL_GLOBAL_DEFAULT);
    return c;
  }();
  return *api;
}

struct Easy {
  CURL* h;
  Easy() : h(curl().easy_init()) {
    if (!h) throw Error(ErrorKind::failed, "curl: cannot create a handle");
  }
  ~Easy() { curl().easy_cleanup(h); }
  Easy(const Easy&) = delete;
  Easy& operator=(const Easy&) = delete;
};

size_t collect(char* ptr, size_t size, size_t nmemb, void* userdata) {
  auto* out = static_cast<std::vector<uint8_t>*>(userdata);
  out->insert(out->end(), ptr, ptr + size * nmemb);
  return size * nmemb;
}

struct Headers {
  curl_slist* list = nullptr;
  ~Headers() { curl().slist_free_all(list); }
};

}  // namespace

// A handle keeps its connection (and TLS session) open between calls: reused, not reset away.
struct HttpClient::Handles {
  Pool<Easy> pool{[] { return std::make_unique<Easy>(); }};
};

HttpClient::HttpClient(HttpClientOptions options) : m_options(std::move(options)), m_handles(std::make_unique<Handles>()) {
  curl();  // a missing libcurl is said when the client is made, not at its first request
}

HttpClient::~HttpClient() = default;

HttpResponse HttpClient::post(const std::string& url, std::span<const uint8_t> body, const std::vector<std::string>& headers) {
  const Curl& c = curl();
  Pool<Easy>::Lease lease(m_handles->pool);
  CURL* h = lease.get()->h;
  c.easy_reset(h);  // options only: the connection cache stays
  HttpResponse response;
  c.easy_setopt(h, CURLOPT_URL, url.c_str());
  c.easy_setopt(h, CURLOPT_POST, 1L);
  c.easy_setopt(h, CURLOPT_POSTFIELDS, reinterpret_cast<const char*>(body.data()));
  c.easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  c.easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
  c.easy_setopt(h, CURLOPT_WRITEDATA, &response.body);
  c.easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, m_options.connect_timeout_ms);
  // Idle: less than one byte a second for the whole window (a server that accepted and
  // never answers). A long upload or reply keeps bytes moving, so it is not cut.
  c.easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
  c.easy_setopt(h, CURLOPT_LOW_SPEED_TIME, m_options.idle_timeout_s);
  c.easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  if (!m_options.ca_file.empty()) c.easy_setopt(h, CURLOPT_CAINFO, m_options.ca_file.c_str());
  Headers list;
  for (const auto& header : headers) list.list = c.slist_append(list.list, header.c_str());
  c.easy_setopt(h, CURLOPT_HTTPHEADER, list.list);
  CURLcode rc = c.easy_perform(h);
  curl_off_t retry_after = 0;
  c.easy_getinfo(h, CURLINFO_RESPONSE_CODE, &response.status);
  c.easy_getinfo(h, CURLINFO_RETRY_AFTER, &retry_after);
  response.retry_after = static_cast<long>(retry_after);
  if (rc != CURLE_OK) {
    // Only a certificate that fails verification is a refusal; a handshake cut short (a
    // server restarting, a connection reset) is transient, and --watch retries it.
    if (rc == CURLE_SSL_CACERT || rc == CURLE_PEER_FAILED_VERIFICATION)
      throw Error(ErrorKind::permission, c.easy_strerror(rc), k_untrusted_certificate);
    if (rc == CURLE_OPERATION_TIMEDOUT) throw Error(ErrorKind::unavailable, c.easy_strerror(rc), k_http_timeout);
    // A CA file that is not one is a setting to fix, not a server away (--watch stops).
    if (rc == CURLE_SSL_CACERT_BADFILE)
      throw Error(ErrorKind::usage, "--ca-file " + m_options.ca_file + ": no CA certificate (PEM) could be read from it");
    // Plain HTTP to a TLS port: the server drops what is not a handshake, and curl says
    // only "Server returned nothing".
    if (rc == CURLE_GOT_NOTHING && url.rfind("http://", 0) == 0)
      throw Error(ErrorKind::unavailable, std::string(c.easy_strerror(rc)) + " (does it serve https? then say https://)");
    throw Error(ErrorKind::unavailable, c.easy_strerror(rc));
  }
  return response;
}

}  // namespace mirage::util
