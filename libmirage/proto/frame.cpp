#include "libmirage/proto/frame.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace mirage::proto {

namespace {

std::string dump(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

Frame split(nlohmann::json header, std::vector<uint8_t> binary) {
  Frame f;
  f.header = std::move(header);
  f.binary = std::move(binary);
  return f;
}

uint64_t binary_length(const nlohmann::json& header) {
  if (!header.is_object()) throw Error(ErrorKind::usage, "malformed frame: header is not a JSON object");
  auto it = header.find("binary");
  if (it == header.end()) return 0;
  if (!it->is_number_unsigned()) throw Error(ErrorKind::usage, "malformed frame: 'binary' is not a byte count");
  uint64_t n = it->get<uint64_t>();
  if (n > k_max_binary) throw Error(ErrorKind::usage, "malformed frame: binary part of " + std::to_string(n) + " bytes is too large");
  return n;
}

// Copying, dumping and comparing JSON recurse once per level, so a header nested
// 60,000 levels deep would overflow the stack in any of them: refuse it before parsing.
// Brackets inside strings do not count; the parser rejects what is not JSON anyway.
void check_depth(std::span<const uint8_t> line, size_t max_depth) {
  max_depth = std::min(max_depth, k_max_depth);
  size_t depth = 0;
  bool in_string = false, escaped = false;
  for (uint8_t c : line) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '{' || c == '[') {
      if (++depth > max_depth)
        throw Error(ErrorKind::usage, "malformed frame: header nested deeper than " + std::to_string(max_depth) + " levels");
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
  }
}

/// Throws Error(usage) for a header line longer than the limit (or the ceiling).
void check_header_size(size_t size, size_t max_header) {
  max_header = std::min(max_header, k_max_header);
  if (size > max_header)
    throw Error(ErrorKind::usage, "malformed frame: header too large (the limit is " + std::to_string(max_header) + " bytes)");
}

nlohmann::json parse_header(std::span<const uint8_t> line, const FrameLimits& limits) {
  check_depth(line, limits.max_depth);
  auto j = nlohmann::json::parse(line.begin(), line.end(), nullptr, false);
  if (j.is_discarded()) throw Error(ErrorKind::usage, "malformed frame: header is not valid JSON");
  return j;
}

}  // namespace

std::vector<uint8_t> encode_frame(const nlohmann::json& header, std::span<const uint8_t> binary) {
  nlohmann::json h = header;
  if (!binary.empty()) h["binary"] = binary.size();
  std::string text = dump(h);
  std::vector<uint8_t> out;
  out.reserve(text.size() + 1 + binary.size());
  out.insert(out.end(), text.begin(), text.end());
  out.push_back('\n');
  out.insert(out.end(), binary.begin(), binary.end());
  return out;
}

namespace {
nlohmann::json request_header(const Request& r) {
  nlohmann::json h = {{"v", k_protocol_version}, {"id", r.id}, {"method", r.method}, {"params", r.params}};
  if (!r.binary.empty()) h["binary"] = r.binary.size();
  return h;
}
}  // namespace

std::vector<uint8_t> encode_request(const Request& r) { return encode_frame(request_header(r), r.binary); }

std::vector<uint8_t> encode_request_header(const Request& r) { return encode_frame(request_header(r), {}); }

namespace {
nlohmann::json reply_header(const Reply& r) {
  nlohmann::json h = {{"id", r.id}};
  if (r.error) {
    h["error"] = {{"code", kind_name(r.error->kind())}, {"message", r.error->what()}};
    if (!r.error->reason().empty()) h["error"]["reason"] = r.error->reason();
  } else
    h["result"] = r.result;
  if (!r.binary.empty()) h["binary"] = r.binary.size();
  return h;
}
}  // namespace

std::vector<uint8_t> encode_reply(const Reply& r) { return encode_frame(reply_header(r), r.binary); }

std::vector<uint8_t> encode_reply_header(const Reply& r) { return encode_frame(reply_header(r), {}); }

namespace {
/// The header of a complete frame, checked against the length of its binary part;
/// returns the header and its length (without the newline).
std::pair<nlohmann::json, size_t> frame_header(std::span<const uint8_t> data, const FrameLimits& limits) {
  auto nl = std::find(data.begin(), data.end(), uint8_t('\n'));
  if (nl == data.end()) throw Error(ErrorKind::usage, "malformed frame: no header line");
  size_t hlen = static_cast<size_t>(nl - data.begin());
  check_header_size(hlen, limits.max_header);
  auto header = parse_header(data.first(hlen), limits);
  uint64_t n = binary_length(header);
  if (data.size() - hlen - 1 != n)
    throw Error(ErrorKind::usage, "malformed frame: header announces " + std::to_string(n) + " binary bytes, body has " +
                                      std::to_string(data.size() - hlen - 1));
  return {std::move(header), hlen};
}
}  // namespace

Frame decode_frame(std::span<const uint8_t> data, const FrameLimits& limits) {
  auto [header, hlen] = frame_header(data, limits);
  return split(std::move(header), std::vector<uint8_t>(data.begin() + static_cast<ptrdiff_t>(hlen + 1), data.end()));
}

Frame decode_frame(std::vector<uint8_t>&& data, const FrameLimits& limits) {
  auto [header, hlen] = frame_header(data, limits);
  data.erase(data.begin(), data.begin() + static_cast<ptrdiff_t>(hlen + 1));  // in place: no second copy
  return split(std::move(header), std::move(data));
}

Request parse_request(Frame frame, nlohmann::json* id_out) {
  const auto& h = frame.header;
  if (h.contains("id")) *id_out = h["id"];
  if (!h.contains("v") || !h["v"].is_number_integer())
    throw Error(ErrorKind::usage, "request without a protocol version ('v'); this server speaks version " +
                                      std::to_string(k_protocol_version));
  if (h["v"].get<int64_t>() != k_protocol_version)
    throw Error(ErrorKind::precondition, "protocol version " + h["v"].dump() + " is not supported; this server speaks " +
                                             std::to_string(k_protocol_version) + " (upgrade the client or the server)");
  if (!h.contains("method") || !h["method"].is_string()) throw Error(ErrorKind::usage, "request without a method");
  Request r;
  r.id = h.value("id", nlohmann::json(0));
  r.method = h["method"].get<std::string>();
  if (h.contains("params")) {
    if (!h["params"].is_object()) throw Error(ErrorKind::usage, "request params must be a JSON object");
    r.params = h["params"];
  }
  r.binary = std::move(frame.binary);
  return r;
}

Request rewire_request(Request request, const FrameLimits& limits, size_t* length_out, nlohmann::json* id_out) {
  auto line = encode_frame(request_header(request), {});
  *length_out = line.size() + request.binary.size();
  check_header_size(line.size() - 1, limits.max_header);
  Frame frame{parse_header(std::span(line).first(line.size() - 1), limits), std::move(request.binary)};
  return parse_request(std::move(frame), id_out);
}

Reply parse_reply(Frame frame) {
  Reply r;
  const auto& h = frame.header;
  r.id = h.value("id", nlohmann::json(0));
  if (h.contains("error")) {
    const auto& e = h["error"];
    std::string code = e.is_object() ? e.value("code", "failed") : "failed";
    std::string message = e.is_object() ? e.value("message", "server error") : "server error";
    std::string reason = e.is_object() && e.contains("reason") && e["reason"].is_string() ? e["reason"].get<std::string>() : "";
    r.error = Error(kind_from_name(code), message, std::move(reason));
  } else if (h.contains("result")) {
    r.result = h["result"];
  } else {
    throw Error(ErrorKind::failed, "malformed reply: neither result nor error");
  }
  r.binary = std::move(frame.binary);
  return r;
}

std::vector<uint8_t> encode_ids(std::span<const util::Digest> ids) {
  std::vector<uint8_t> out(ids.size() * 32);
  for (size_t i = 0; i < ids.size(); ++i) std::copy(ids[i].bytes.begin(), ids[i].bytes.end(), out.begin() + i * 32);
  return out;
}

std::vector<util::Digest> decode_ids(std::span<const uint8_t> binary) {
  if (binary.size() % 32) throw Error(ErrorKind::usage, "id list is not a multiple of 32 bytes");
  std::vector<util::Digest> ids(binary.size() / 32);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = util::Digest::from_span(binary.subspan(i * 32, 32));
  return ids;
}

bool FrameReader::fill() {
  if (m_pos > 0) {  // drop what was consumed; offsets are kept relative to m_pos
    m_buf.erase(m_buf.begin(), m_buf.begin() + static_cast<ptrdiff_t>(m_pos));
    m_pos = 0;
  }
  size_t at = m_buf.size();
  m_buf.resize(at + (1 << 16));
  for (;;) {
    ssize_t n = ::read(m_fd, m_buf.data() + at, m_buf.size() - at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      m_buf.resize(at);
      throw_errno(ErrorKind::unavailable, "read from peer");
    }
    m_buf.resize(at + static_cast<size_t>(n));
    return n > 0;
  }
}

std::optional<Frame> FrameReader::next() {
  // Header line.
  size_t scanned = 0;  // bytes after m_pos already searched (fill() may move the buffer)
  size_t nl;
  for (;;) {
    auto it = std::find(m_buf.begin() + static_cast<ptrdiff_t>(m_pos + scanned), m_buf.end(), uint8_t('\n'));
    if (it != m_buf.end()) {
      nl = static_cast<size_t>(it - m_buf.begin());
      break;
    }
    scanned = m_buf.size() - m_pos;
    check_header_size(scanned, m_limits.max_header);
    if (!fill()) {
      if (m_pos == m_buf.size()) return std::nullopt;
      throw Error(ErrorKind::unavailable, "peer closed the stream mid-frame");
    }
  }
  check_header_size(nl - m_pos, m_limits.max_header);  // the line may have come whole in one read
  auto header = parse_header(std::span(m_buf).subspan(m_pos, nl - m_pos), m_limits);
  m_pos = nl + 1;
  uint64_t n = binary_length(header);
  std::vector<uint8_t> binary;
  binary.reserve(static_cast<size_t>(n));
  size_t take = std::min<size_t>(static_cast<size_t>(n), m_buf.size() - m_pos);
  binary.insert(binary.end(), m_buf.begin() + static_cast<ptrdiff_t>(m_pos),
                m_buf.begin() + static_cast<ptrdiff_t>(m_pos + take));
  m_pos += take;
  if (binary.size() < n) {
    // Read the rest straight into the frame.
    size_t have = binary.size();
    binary.resize(static_cast<size_t>(n));
    while (have < n) {
      ssize_t r = ::read(m_fd, binary.data() + have, n - have);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) throw_errno(ErrorKind::unavailable, "read from peer");
      if (r == 0) throw Error(ErrorKind::unavailable, "peer closed the stream mid-frame");
      have += static_cast<size_t>(r);
    }
  }
  return split(std::move(header), std::move(binary));
}

}  // namespace mirage::proto
