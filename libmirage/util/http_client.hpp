#pragma once
// The one wrapper of libcurl: HTTP(S) POSTs on kept-alive connections (a pool of curl
// handles, so concurrent calls each have one), with a connect timeout, an idle timeout
// and an optional CA bundle. Nothing else in Mirage includes curl.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace mirage::util {

struct HttpClientOptions {
  std::string ca_file;          ///< CA bundle for https (empty: the system store)
  long connect_timeout_ms = 60000;  ///< to open a connection, TLS handshake included
  long idle_timeout_s = 300;    ///< less than one byte a second for this long: give up
};

struct HttpResponse {
  long status = 0;
  long retry_after = 0;  ///< seconds of a Retry-After header; 0 when absent or a date
  std::vector<uint8_t> body;
};

/// Reasons of the errors post() throws (Error::reason()).
inline constexpr const char* k_http_timeout = "timeout";
inline constexpr const char* k_untrusted_certificate = "untrusted_certificate";

class HttpClient {
 public:
  explicit HttpClient(HttpClientOptions options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  /// POSTs `body` to `url` with `headers` ("Name: value"). Thread-safe. A reply of any
  /// status is returned; a transport failure throws Error(unavailable) (reason
  /// k_http_timeout for a timeout), or Error(permission, reason k_untrusted_certificate)
  /// for a certificate that fails verification. The message is libcurl's.
  HttpResponse post(const std::string& url, std::span<const uint8_t> body, const std::vector<std::string>& headers);

  const HttpClientOptions& options() const { return m_options; }

 private:
  struct Handles;
  HttpClientOptions m_options;
  std::unique_ptr<Handles> m_handles;
};

}  // namespace mirage::util
