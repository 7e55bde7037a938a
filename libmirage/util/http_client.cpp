#include "libmirage/util/http_client.hpp"

#include <curl/curl.h>

#include <mutex>

#include "libmirage/util/error.hpp"
#include "libmirage/util/pool.hpp"

namespace mirage::util {

namespace {

struct Easy {
  CURL* h;
  Easy() : h(curl_easy_init()) {
    if (!h) throw Error(ErrorKind::failed, "curl: cannot create a handle");
  }
  ~Easy() { curl_easy_cleanup(h); }
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
  ~Headers() { curl_slist_free_all(list); }
};

}  // namespace

// A handle keeps its connection (and TLS session) open between calls: reused, not reset away.
struct HttpClient::Handles {
  Pool<Easy> pool{[] { return std::make_unique<Easy>(); }};
};

HttpClient::HttpClient(HttpClientOptions options) : m_options(std::move(options)), m_handles(std::make_unique<Handles>()) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

HttpClient::~HttpClient() = default;

HttpResponse HttpClient::post(const std::string& url, std::span<const uint8_t> body, const std::vector<std::string>& headers) {
  Pool<Easy>::Lease lease(m_handles->pool);
  CURL* h = lease.get()->h;
  curl_easy_reset(h);  // options only: the connection cache stays
  HttpResponse response;
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_POST, 1L);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, reinterpret_cast<const char*>(body.data()));
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &response.body);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, m_options.connect_timeout_ms);
  // Idle: less than one byte a second for the whole window (a server that accepted and
  // never answers). A long upload or reply keeps bytes moving, so it is not cut.
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, m_options.idle_timeout_s);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  if (!m_options.ca_file.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, m_options.ca_file.c_str());
  Headers list;
  for (const auto& header : headers) list.list = curl_slist_append(list.list, header.c_str());
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, list.list);
  CURLcode rc = curl_easy_perform(h);
  curl_off_t retry_after = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &response.status);
  curl_easy_getinfo(h, CURLINFO_RETRY_AFTER, &retry_after);
  response.retry_after = static_cast<long>(retry_after);
  if (rc != CURLE_OK) {
    // Only a certificate that fails verification is a refusal; a handshake cut short (a
    // server restarting, a connection reset) is transient, and --watch retries it.
    if (rc == CURLE_SSL_CACERT || rc == CURLE_PEER_FAILED_VERIFICATION)
      throw Error(ErrorKind::permission, curl_easy_strerror(rc), k_untrusted_certificate);
    if (rc == CURLE_OPERATION_TIMEDOUT) throw Error(ErrorKind::unavailable, curl_easy_strerror(rc), k_http_timeout);
    throw Error(ErrorKind::unavailable, curl_easy_strerror(rc));
  }
  return response;
}

}  // namespace mirage::util
