#include "libmirage/server/limits.hpp"
#include "libmirage/server/http_server.hpp"


#include <algorithm>
#include <charconv>

#include "libmirage/server/methods.hpp"
#include "libmirage/server/registry.hpp"
#include "libmirage/server/service.hpp"
#include "libmirage/util/error.hpp"

namespace mirage::server {

namespace {

constexpr uint64_t K = 1u << 10, M = 1u << 20, G = 1u << 30;

// The ranges keep a value from being useless (a body limit under one request's
// header) or absurd (more than the frame format carries). The frame limits' maxima are
// the ceilings that protect the parser: they may be lowered, never raised.
const LimitInfo k_table[] = {
    {"upload-body", &Limits::upload_body, LimitUnit::bytes, 64 * K, G, "body of one chunks.put (an upload batch or a tree object)",
     "413, error usage (exit 2)"},
    {"read-body", &Limits::read_body, LimitUnit::bytes, 64 * K, G, "body of one chunks.get, chunks.missing or chunks.delta",
     "413, error usage (exit 2)"},
    {"layer-body", &Limits::layer_body, LimitUnit::bytes, 64 * K, G, "body of one layer.commit (its manifest)",
     "413, error usage (exit 2)"},
    {"request-body", &Limits::request_body, LimitUnit::bytes, 4 * K, G, "body of any other request",
     "413, error usage (exit 2)"},
    {"anonymous-body", &Limits::anonymous_body, LimitUnit::bytes, 4 * K, G, "body of a request without a token",
     "413, error usage (exit 2)"},
    {"inventory", &Limits::inventory, LimitUnit::bytes, K, 16 * M, "device.register's inventory (JSON text)",
     "400, error usage (exit 2)"},
    {"stats", &Limits::stats, LimitUnit::bytes, K, 16 * M, "snapshot.commit's stats (JSON text)", "400, error usage (exit 2)"},
    {"pending-devices", &Limits::pending_devices, LimitUnit::count, 1, 10'000'000,
     "devices registered and waiting for acceptance (a new anonymous register past it is refused)",
     "503, error unavailable (exit 75)"},
    {"get-ids", &Limits::get_ids, LimitUnit::count, 1, 1u << 20, "chunk ids in one chunks.get", "400, error usage (exit 2)"},
    {"delta-pairs", &Limits::delta_pairs, LimitUnit::count, 1, 1u << 16, "(wanted, base) pairs in one chunks.delta",
     "400, error usage (exit 2)"},
    {"delta-chunk", &Limits::delta_chunk, LimitUnit::bytes, 4 * K, 64 * M, "a chunk chunks.delta makes a delta of",
     "no delta: the client fetches the chunk whole"},
    {"delta-work", &Limits::delta_work, LimitUnit::bytes, M, 4 * G, "plaintext chunks.delta compresses in one request",
     "no delta for the rest: fetched whole"},
    {"frame-header", &Limits::frame_header, LimitUnit::bytes, 4 * K, proto::k_max_header,
     "a request's JSON header line (16M is also the ceiling)", "400, error usage (exit 2); over stdio the stream ends"},
    {"frame-depth", &Limits::frame_depth, LimitUnit::count, 8, proto::k_max_depth,
     "JSON nesting of a request header (64 is also the ceiling)", "400, error usage (exit 2); over stdio the stream ends"},
    {"body-wait", &Limits::body_wait, LimitUnit::seconds, 1, 3600,
     "seconds a request waits for its share of --max-body-memory (default: --read-timeout)",
     "503 with Retry-After: 1 (clients retry)"},
};

const LimitInfo* find(const std::string& name) {
  for (const auto& l : k_table)
    if (name == l.name) return &l;
  return nullptr;
}

std::string range_text(const LimitInfo& l) {
  return std::string(l.unit == LimitUnit::bytes ? "a size" : l.unit == LimitUnit::count ? "a count" : "seconds") +
         " from " + format_limit(l.min, l.unit) + " to " + format_limit(l.max, l.unit);
}

}  // namespace

std::span<const LimitInfo> limit_table() { return k_table; }

const char* unit_name(LimitUnit unit) {
  switch (unit) {
    case LimitUnit::bytes: return "bytes";
    case LimitUnit::count: return "count";
    case LimitUnit::seconds: return "seconds";
  }
  return "";
}

std::string format_limit(uint64_t value, LimitUnit unit) {
  if (unit != LimitUnit::bytes || value == 0) return std::to_string(value);
  for (auto [factor, suffix] : {std::pair{G, "G"}, std::pair{M, "M"}, std::pair{K, "K"}})
    if (value % factor == 0) return std::to_string(value / factor) + suffix;
  return std::to_string(value);
}

uint64_t Limits::body_limit(const std::string& method) const {
  // The method's row names its limit (registry.cpp): an upload carries up to 4 MiB of
  // chunks, or one tree object (at most 64 MiB); id lists are at most 65,536 ids; a
  // layer's manifest (whiteouts, record deltas) rides in the header, which the frame
  // format holds to 16 MiB.
  const Method* m = find_method(method);
  return m ? this->*(m->body) : request_body;
}

uint64_t Limits::max_body() const { return std::max({upload_body, read_body, layer_body, request_body}); }

uint64_t Limits::body_limit(const std::string& method, bool anonymous) const {
  uint64_t limit = method.empty() ? max_body() : body_limit(method);
  return anonymous ? std::min(limit, anonymous_body) : limit;
}

std::optional<Error> Limits::body_refusal(uint64_t length, const std::string& method, bool anonymous) const {
  uint64_t limit = body_limit(method, anonymous);
  if (length <= limit) return std::nullopt;
  return Error(ErrorKind::usage, "request body of " + std::to_string(length) + " bytes is over the limit of " +
                                     std::to_string(limit) + " for " + (method.empty() ? std::string("this request") : method) +
                                     (anonymous ? " without a token" : ""));
}

proto::FrameLimits Limits::frame() const {
  return {static_cast<size_t>(std::min<uint64_t>(frame_header, proto::k_max_header)),
          static_cast<size_t>(std::min<uint64_t>(frame_depth, proto::k_max_depth))};
}

void Limits::set(const std::string& spec, const SizeParser& parse_size) {
  auto eq = spec.find('=');
  if (eq == std::string::npos || eq == 0)
    throw Error(ErrorKind::usage, "--limit " + spec + ": expected NAME=VALUE (mirage-serverd limits lists the names)");
  std::string name = spec.substr(0, eq), text = spec.substr(eq + 1);
  const LimitInfo* l = find(name);
  if (!l) {
    for (const char* flag : {"http-threads", "max-connections", "read-timeout", "max-body-memory", "gc-interval"})
      if (name == flag) throw Error(ErrorKind::usage, "--limit " + name + ": set it with --" + name);
    throw Error(ErrorKind::usage, "--limit " + name + ": no such limit (mirage-serverd limits lists them)");
  }
  auto bad = [&] { return Error(ErrorKind::usage, "--limit " + spec + ": expected " + range_text(*l)); };
  uint64_t value = 0;
  if (l->unit == LimitUnit::bytes) {
    // The parser --max-body-memory uses (CLI11's, 1K = 1024): one syntax for sizes.
    if (text.empty() || text[0] == '-') throw bad();
    auto parsed = parse_size(text);
    if (!parsed) throw bad();
    value = *parsed;
  } else {
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size()) throw bad();
  }
  if (value < l->min || value > l->max) throw bad();
  this->*(l->field) = value;
  m_set.insert(name);
}

nlohmann::json limits_report(const Limits& limits, const HttpOptions& http) {
  nlohmann::json rows = nlohmann::json::array();
  Limits defaults;
  for (const auto& l : k_table) {
    uint64_t def = defaults.*(l.field);
    if (l.field == &Limits::body_wait) def = static_cast<uint64_t>(http.read_timeout);
    rows.push_back({{"name", l.name}, {"value", limits.*(l.field)}, {"default", def}, {"unit", unit_name(l.unit)},
                    {"min", l.min}, {"max", l.max}, {"flag", "--limit " + std::string(l.name) + "=VALUE"},
                    {"bounds", l.bounds}, {"exceeded", l.exceeded}});
  }
  HttpOptions d;
  auto dedicated = [&](const char* name, uint64_t value, uint64_t def, LimitUnit unit, uint64_t min, uint64_t max,
                       const char* bounds, const char* exceeded) {
    rows.push_back({{"name", name}, {"value", value}, {"default", def}, {"unit", unit_name(unit)}, {"min", min},
                    {"max", max}, {"flag", std::string("--") + name}, {"bounds", bounds}, {"exceeded", exceeded}});
  };
  dedicated("http-threads", http.threads, d.threads, LimitUnit::count, 1, 1024, "handler threads started up front (an idle connection holds none)",
            "more are made on demand, up to --max-connections");
  dedicated("max-connections", http.max_connections, d.max_connections, LimitUnit::count, 1, 4096,
            "requests handled at once", "further requests wait for a handler thread");
  dedicated("read-timeout", static_cast<uint64_t>(http.read_timeout), static_cast<uint64_t>(d.read_timeout),
            LimitUnit::seconds, 1, 3600, "seconds a connection may send nothing", "the connection is closed");
  dedicated("max-body-memory", http.max_body_memory, d.max_body_memory, LimitUnit::bytes, M, 1ull << 40,
            "request bytes held in memory at once, all connections (an upload counts twice)",
            "the request waits up to body-wait, then 503 with Retry-After: 1");
  dedicated("gc-interval", static_cast<uint64_t>(http.gc_interval), static_cast<uint64_t>(d.gc_interval), LimitUnit::seconds,
            0, 1'000'000'000, "seconds between automatic GC runs (0: none)", "-");
  // Fixed by a format or a standard: listed, not settable.
  rows.push_back({{"name", "hostname"}, {"value", 253}, {"default", 253}, {"unit", "bytes"}, {"min", 253}, {"max", 253},
                  {"flag", nullptr}, {"bounds", "device.register's hostname (a DNS name, RFC 1035; fixed)"},
                  {"exceeded", "400, error usage (exit 2)"}});
  rows.push_back({{"name", "device-id"}, {"value", 128}, {"default", 128}, {"unit", "bytes"}, {"min", 128}, {"max", 128},
                  {"flag", nullptr}, {"bounds", "a device id (letters, digits, - _ . :; fixed)"},
                  {"exceeded", "400, error usage (exit 2)"}});
  rows.push_back({{"name", "restore-event-paths"}, {"value", k_max_report_paths}, {"default", k_max_report_paths},
                  {"unit", "count"}, {"min", k_max_report_paths}, {"max", k_max_report_paths}, {"flag", nullptr},
                  {"bounds", "paths an events.report of a restore names (the rest counted in paths_total; fixed)"},
                  {"exceeded", "400, error usage (exit 2)"}});
  rows.push_back({{"name", "name"}, {"value", 100}, {"default", 100}, {"unit", "bytes"}, {"min", 100}, {"max", 100},
                  {"flag", nullptr}, {"bounds", "a token, layer, collection or tag name (fixed)"},
                  {"exceeded", "400, error usage (exit 2)"}});
  rows.push_back({{"name", "frame-binary"}, {"value", proto::k_max_binary}, {"default", proto::k_max_binary},
                  {"unit", "bytes"}, {"min", proto::k_max_binary}, {"max", proto::k_max_binary}, {"flag", nullptr},
                  {"bounds", "a frame's binary part (the wire format; fixed)"}, {"exceeded", "400, error usage (exit 2)"}});
  rows.push_back({{"name", "http-header"}, {"value", HttpServerOptions{}.header_limit},
                  {"default", HttpServerOptions{}.header_limit}, {"unit", "bytes"},
                  {"min", HttpServerOptions{}.header_limit}, {"max", HttpServerOptions{}.header_limit}, {"flag", nullptr},
                  {"bounds", "an HTTP request's header: request line and fields (fixed)"},
                  {"exceeded", "431, the connection is closed"}});
  return rows;
}

}  // namespace mirage::server
