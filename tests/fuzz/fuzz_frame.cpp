// Request frames come from any client: parsing must never crash.
#include <unistd.h>

#include "libmirage/proto/frame.hpp"
#include "libmirage/util/fd.hpp"
#include "tests/fuzz/fuzz.hpp"

using namespace mirage;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    nlohmann::json id;
    proto::parse_request(proto::decode_frame(std::span(data, size)), &id);
  } catch (const Error&) {
  }
  try {
    proto::parse_reply(proto::decode_frame(std::span(data, size)));
  } catch (const Error&) {
  }
  // The streaming reader over a pipe, as stdio serves it.
  int fds[2];
  if (size < 60000 && ::pipe(fds) == 0) {
    util::Fd rd(fds[0]), wr(fds[1]);
    util::write_all(wr.get(), std::span(data, size), "pipe");
    wr = util::Fd();
    proto::FrameReader reader(rd.get());
    try {
      while (reader.next()) {
      }
    } catch (const Error&) {
    }
  }
  return 0;
}

std::vector<std::vector<uint8_t>> fuzz_seeds() {
  proto::Request r;
  r.method = "chunks.put";
  r.params = {{"device_id", "d"}};
  r.binary = {1, 2, 3};
  proto::Reply reply;
  reply.result = {{"ok", true}};
  return {proto::encode_request(r), proto::encode_reply(reply)};
}
