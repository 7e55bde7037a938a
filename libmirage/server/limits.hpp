#pragma once
// Every bound the server puts on one request or on what clients may pile up, with its
// default, in one struct the Service owns; `mirage-serverd --limit NAME=VALUE` sets
// one, `mirage-serverd limits` lists them (man mirage-serverd, LIMITS). The HTTP
// layer's own settings (threads, connections, timeouts, body memory) are HttpOptions,
// with flags of their own; `limits` lists them too.
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <span>
#include <string>

#include <nlohmann/json.hpp>

#include "libmirage/proto/frame.hpp"
#include "libmirage/util/error.hpp"

namespace mirage::server {

enum class LimitUnit { bytes, count, seconds };

struct Limits {
  uint64_t upload_body = 80u << 20;     ///< chunks.put: 4 MiB of chunks or one tree object
  uint64_t read_body = 4u << 20;        ///< chunks.get, chunks.missing, chunks.delta: id lists
  uint64_t layer_body = 17u << 20;      ///< layer.commit: its manifest rides in the header
  uint64_t request_body = 1u << 20;     ///< every other method
  uint64_t anonymous_body = 64u << 10;  ///< any request without a token
  uint64_t inventory = 16u << 10;       ///< device.register's inventory, as JSON text
  uint64_t stats = 64u << 10;           ///< snapshot.commit's stats, as JSON text
  uint64_t pending_devices = 10000;     ///< devices registered and not yet accepted or rejected
  uint64_t get_ids = 65536;             ///< ids in one chunks.get
  uint64_t delta_pairs = 4096;          ///< (wanted, base) pairs in one chunks.delta
  uint64_t delta_chunk = 1u << 20;      ///< chunks.delta: larger chunks get "no delta"
  uint64_t delta_work = 64u << 20;      ///< chunks.delta: plaintext compressed per request
  uint64_t frame_header = proto::k_max_header;  ///< a request's header line, at most the ceiling
  uint64_t frame_depth = proto::k_max_depth;    ///< JSON nesting of a header, at most the ceiling
  uint64_t body_wait = 20;              ///< seconds a request waits for its share of --max-body-memory

  /// The largest body of an authenticated request for `method` (the request-body
  /// limit for methods it does not name).
  uint64_t body_limit(const std::string& method) const;
  /// The largest of the body limits: a request whose method is not known yet.
  uint64_t max_body() const;
  /// The body limit of a request for `method` (empty: not known yet, max_body()) from a
  /// caller with a token, or `anonymous` (then at most anonymous_body).
  uint64_t body_limit(const std::string& method, bool anonymous) const;
  /// The refusal (Error(usage), naming the length, the limit and the method) of a request
  /// body of `length` bytes over that limit; nullopt when within. Every transport's.
  std::optional<Error> body_refusal(uint64_t length, const std::string& method, bool anonymous) const;
  proto::FrameLimits frame() const;

  /// Sets one limit from "NAME=VALUE" (sizes take K, M, G suffixes, counts and seconds
  /// are plain numbers); throws Error(usage) naming the limit and its accepted range
  /// for an unknown name, a malformed value or one out of range.
  /// Sizes are read by `parse_size` (the executables pass tool::parse_size, the syntax of
  /// their other size flags; nullopt: malformed), so the library links no CLI parser.
  using SizeParser = std::function<std::optional<uint64_t>(const std::string&)>;
  void set(const std::string& spec, const SizeParser& parse_size);
  /// True when `name` was set by set() (e.g. body-wait, which otherwise follows
  /// --read-timeout).
  bool was_set(const std::string& name) const { return m_set.count(name) > 0; }

 private:
  std::set<std::string> m_set;
};

/// One row of the table: a limit's name, where it lives, its range and what it bounds.
struct LimitInfo {
  const char* name;
  uint64_t Limits::*field;
  LimitUnit unit;
  uint64_t min, max;     ///< the range set() accepts (max: a hard ceiling for the frame limits)
  const char* bounds;    ///< what it bounds
  const char* exceeded;  ///< what the caller gets past it
};
std::span<const LimitInfo> limit_table();

/// "80M", "64K", "1G", "1234" (bytes); counts and seconds as plain numbers.
std::string format_limit(uint64_t value, LimitUnit unit);
const char* unit_name(LimitUnit unit);

}  // namespace mirage::server
