// The chunk methods: which chunks the server lacks, uploads (verified record by
// record), reads, and deltas against a chunk the client has.
#include "libmirage/server/methods.hpp"
#include "libmirage/util/bytes.hpp"
#include "libmirage/util/zstd.hpp"

namespace mirage::server {

using nlohmann::json;

void to_json(json& j, const ChunkCount& r) {
  j = {{"count", r.count}};
  if (r.missing) j["missing"] = *r.missing;
}

ChunkCount chunks_missing(Context& c, const NoParams&) {
  auto ids = proto::decode_ids(c.binary);
  auto missing = c.repo.missing(ids);
  c.reply_binary.resize(ids.size());
  uint64_t n = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    c.reply_binary[i] = missing[i] ? 1 : 0;
    n += missing[i];
  }
  return {ids.size(), n};
}

void to_json(json& j, const ChunksPutReply& r) {
  j = {{"chunks", r.chunks}, {"new_chunks", r.new_chunks}, {"stored_bytes", r.stored_bytes}, {"raw_bytes", r.raw_bytes}};
}

ChunksPutReply chunks_put(Context& c, const ChunksPut& p) {
  int64_t volume = 0;  // captures: the volume with the most free space
  // Endpoints upload to their own CVD (on its volume); image managers upload captures.
  if (p.device_id) volume = accepted_device(c.cat(), *p.device_id).volume;
  // Decode and re-hash every chunk: a forged id is refused here. The store's owner (the
  // stdio client) gets its framing checked only: it could write the packs itself, and
  // every chunk is verified again when it is read.
  auto records = store::verify_upload(c.binary, c.caller.owner ? store::UploadCheck::framing : store::UploadCheck::full);
  // Pinned for GC until this device's (or capture's) commit.
  c.cat().touch_upload(p.device_id ? *p.device_id : "capture:" + c.caller.name);
  auto stats = c.repo.put(records, volume);
  c.service.metrics().uploaded(stats.chunks, stats.new_chunks, stats.stored_bytes);
  return {stats.chunks, stats.new_chunks, stats.stored_bytes, stats.raw_bytes};
}

ChunkCount chunks_get(Context& c, const NoParams&) {
  auto ids = proto::decode_ids(c.binary);
  uint64_t max = c.limits().get_ids;
  if (ids.size() > max)
    throw Error(ErrorKind::usage, "chunks.get: at most " + std::to_string(max) + " ids per request (limit get-ids)");
  if (c.caller.role == Role::device) c.service.reach().check(c.repo, c.caller.name, ids);
  c.repo.read_records(ids, c.reply_binary);
  if (c.reply_binary.size() > proto::k_max_binary) throw Error(ErrorKind::usage, "chunks.get: reply too large");
  return {ids.size(), std::nullopt};
}

ChunkCount chunks_delta(Context& c, const NoParams&) {
  const Limits& limits = c.limits();
  auto ids = proto::decode_ids(c.binary);
  if (ids.size() % 2) throw Error(ErrorKind::usage, "chunks.delta: expected (wanted, base) id pairs");
  if (ids.size() / 2 > limits.delta_pairs)
    throw Error(ErrorKind::usage, "chunks.delta: at most " + std::to_string(limits.delta_pairs) +
                                      " pairs per request (limit delta-pairs)");
  // Deltas are for file chunks (at most 256 KiB): a larger pair, or pairs past a
  // budget of work per request (plaintext compressed), get "no delta" and the client
  // fetches them whole.
  uint64_t work = 0;
  util::ByteWriter out;
  auto& cat = c.cat();
  // A device gets deltas of what it may read, against bases it may read (a base it
  // may not read gets "no delta": its likeness to the wanted chunk is not told).
  std::vector<bool> base_readable(ids.size() / 2, true);
  if (c.caller.role == Role::device) {
    std::vector<util::Digest> wanted, bases;
    for (size_t i = 0; i < ids.size(); i += 2) {
      wanted.push_back(ids[i]);
      bases.push_back(ids[i + 1]);
    }
    c.service.reach().check(c.repo, c.caller.name, wanted);
    base_readable = c.service.reach().may_read(c.repo, c.caller.name, bases);
  }
  for (size_t i = 0; i < ids.size(); i += 2) {
    out.raw(ids[i].bytes);
    auto wanted_at = cat.find_chunk(ids[i]);
    if (!wanted_at) throw Error(ErrorKind::not_found, "chunk " + ids[i].hex() + ": not in the store");
    out.u32le(wanted_at->raw);
    auto base_at = cat.find_chunk(ids[i + 1]);
    if (!base_at || !base_readable[i / 2] ||
        wanted_at->raw > limits.delta_chunk || base_at->raw > limits.delta_chunk ||
        (work += wanted_at->raw + base_at->raw) > limits.delta_work) {
      out.u32le(0xffffffffu);
      continue;
    }
    auto frame = util::zstd_compress_delta(c.repo.read_plain(ids[i]), c.repo.read_plain(ids[i + 1]), 3);
    out.u32le(static_cast<uint32_t>(frame.size()));
    out.raw(frame);
  }
  c.reply_binary = out.take();
  return {ids.size() / 2, std::nullopt};
}

}  // namespace mirage::server
