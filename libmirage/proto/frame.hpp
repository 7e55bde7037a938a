#pragma once
// Wire format, the same on both transports.
//
// A frame is a JSON header on one line (no raw newline inside, at most 16 MiB, nested
// at most 64 levels; a reader may hold its peer to less: FrameLimits), terminated by
// '\n', followed by exactly `binary` raw bytes when the header has a "binary": N field
// (N <= 1 GiB). Over stdio frames follow each other on the pipes; over HTTP one frame
// is the body of a POST to /v1/rpc and one frame is the response.
//
// Request header:  {"v": 1, "id": <any>, "method": "chunks.put", "params": {...}, "binary": N}
// Reply header:    {"id": <same>, "result": {...}, "binary": N}
//             or   {"id": <same>, "error": {"code": "not_found", "message": "...", "reason": "..."}}
//             ("reason" only when the error has one: a fixed word a client may act on,
//             see the k_reason_* constants; the message is for people)
// Bulk data (chunk records, id lists, bitmaps) is always the binary part, never base64.
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "libmirage/util/digest.hpp"
#include "libmirage/util/error.hpp"

namespace mirage::proto {

constexpr int k_protocol_version = 1;
/// The largest header line: the default, and a ceiling no setting raises.
constexpr size_t k_max_header = 16u << 20;
constexpr uint64_t k_max_binary = 1ull << 30;
/// Headers nested deeper than this are refused unparsed (JSON is copied recursively,
/// so depth is stack): the default, and a ceiling no setting raises.
constexpr size_t k_max_depth = 64;

/// What a reader accepts, at most the ceilings above (larger values count as them): a
/// server may hold its clients to less (mirage-serverd --limit frame-header=...).
struct FrameLimits {
  size_t max_header = k_max_header;
  size_t max_depth = k_max_depth;
};

struct Request {
  nlohmann::json id = 0;
  std::string method;
  nlohmann::json params = nlohmann::json::object();
  std::vector<uint8_t> binary;
};

/// snapshot.commit (and layer commits) refused because the server lacks objects the
/// tree names (precondition): an endpoint whose files cache vouched for them rescans.
inline constexpr std::string_view k_reason_incomplete = "incomplete";
/// A registration or credential of an accepted device's id from a machine without the
/// device's credential (precondition): it waits until an admin re-enrolls the device.
inline constexpr std::string_view k_reason_reenroll = "reenroll";

struct Reply {
  nlohmann::json id = 0;
  nlohmann::json result = nlohmann::json::object();
  std::optional<Error> error;
  std::vector<uint8_t> binary;
};

std::vector<uint8_t> encode_frame(const nlohmann::json& header, std::span<const uint8_t> binary);
std::vector<uint8_t> encode_request(const Request& request);
/// The header line alone (with its '\n'); the binary part follows it unchanged.
std::vector<uint8_t> encode_request_header(const Request& request);
std::vector<uint8_t> encode_reply(const Reply& reply);
/// The reply's header line alone (with its '\n'); its binary part follows it unchanged
/// (a large reply is written without being copied behind its header).
std::vector<uint8_t> encode_reply_header(const Reply& reply);

struct Frame {
  nlohmann::json header;
  std::vector<uint8_t> binary;
};

/// Splits a complete frame (an HTTP body); throws Error(usage) when malformed.
Frame decode_frame(std::span<const uint8_t> data, const FrameLimits& limits = {});
/// The same, keeping `data`'s buffer as the binary part (no copy of a large body).
Frame decode_frame(std::vector<uint8_t>&& data, const FrameLimits& limits = {});
/// Validates a request header (version, method, params); throws Error(usage) naming
/// what is wrong, and keeps the id in `id_out` so the error reply can carry it.
Request parse_request(Frame frame, nlohmann::json* id_out);
/// A request as a server reads it off the wire, without the wire (the in-process
/// transport): its header encoded and parsed again (text made valid UTF-8, as the encoder
/// does for every transport; the frame limits held) and validated as parse_request does;
/// its binary part moved. `length_out`: the length its frame would have. Throws as
/// decode_frame and parse_request do.
Request rewire_request(Request request, const FrameLimits& limits, size_t* length_out, nlohmann::json* id_out);
/// Reads a reply; a reply carrying an error comes back with `error` set.
Reply parse_reply(Frame frame);

/// An id list as a binary part: 32 raw bytes per id.
std::vector<uint8_t> encode_ids(std::span<const util::Digest> ids);
/// The inverse; throws Error(usage) when the size is not a multiple of 32.
std::vector<util::Digest> decode_ids(std::span<const uint8_t> binary);

/// Reads frames from a stream (a pipe), buffered.
class FrameReader {
 public:
  explicit FrameReader(int fd, FrameLimits limits = {}) : m_fd(fd), m_limits(limits) {}
  /// The next frame, or nullopt at a clean end of stream; throws Error(usage) on a
  /// malformed frame and Error(unavailable) on a stream cut mid-frame.
  std::optional<Frame> next();

 private:
  bool fill();
  int m_fd;
  FrameLimits m_limits;
  std::vector<uint8_t> m_buf;
  size_t m_pos = 0;
};

}  // namespace mirage::proto
