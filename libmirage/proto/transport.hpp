#pragma once
// Transports carry request frames to a server and bring replies back.
//   local:DIR          the embedded default: DIR's service in this process
//                      (ConnectOptions::in_process), else, or when a server program is
//                      named (serverd_exe, $MIRAGE_SERVERD), that program run as
//                      `mirage-serverd --stdio --data DIR` (the caller ignores SIGPIPE, as
//                      cmd/ does: the library sets no signal)
//   http(s)://H:P      POSTs frames to /v1/rpc with a bearer token (util::HttpClient)
#include <functional>
#include <memory>
#include <string>

#include "libmirage/proto/frame.hpp"

namespace mirage::proto {

class Transport {
 public:
  virtual ~Transport() = default;
  /// Sends a request and waits for its reply. Thread-safe. A reply carrying an error
  /// is returned, not thrown; transport failures throw Error(unavailable).
  virtual Reply call(Request request) = 0;
  /// A short description for messages ("local:/var/lib/mirage").
  virtual std::string describe() const = 0;
};

struct ConnectOptions {
  std::string server;       ///< "local:DIR" or "http(s)://host:port"
  std::string token;        ///< bearer token for HTTP
  /// Opens local:DIR's service in this process (server::open_in_process; proto cannot
  /// name it). Unset, or with a server program named below, local: runs that program.
  std::function<std::unique_ptr<Transport>(const std::string& dir)> in_process;
  /// The server program for local: over stdio: this, else $MIRAGE_SERVERD, else
  /// mirage-serverd beside this executable, then on PATH.
  std::string serverd_exe;
  std::string ca_file;      ///< CA bundle for https (default: the system store)
  /// HTTP(S): seconds to open the connection, TLS handshake included. Negative:
  /// $MIRAGE_CONNECT_TIMEOUT, else 60 (a busy server takes a queued handshake late).
  double connect_timeout = -1;
  /// HTTP(S): seconds without a byte received (or sent) before a call gives up. Negative:
  /// $MIRAGE_IDLE_TIMEOUT, else 300 (the server's own read/write timeout).
  double idle_timeout = -1;
};

/// Opens a transport. Throws Error(usage) for a malformed server or timeout setting, and
/// Error(unavailable) when a local server cannot be started. A call that times out (see
/// the timeouts above) throws Error(unavailable), which --watch retries.
std::unique_ptr<Transport> connect(const ConnectOptions& options);

/// The default data directory: $MIRAGE_HOME, else /var/lib/mirage for root, else
/// $XDG_DATA_HOME/mirage (~/.local/share/mirage).
std::string default_data_dir();
/// The default server: $MIRAGE_SERVER, else "local:" + default_data_dir().
std::string default_server();

}  // namespace mirage::proto
