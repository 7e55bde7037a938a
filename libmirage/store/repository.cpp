#include "libmirage/store/repository.hpp"

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <set>
#include <tuple>
#include <unordered_set>

#include "libmirage/tree/tree.hpp"
#include "libmirage/util/error.hpp"
#include "libmirage/util/hex.hpp"

namespace mirage::store {

namespace fs = std::filesystem;

namespace {

/// Pack files under DATA's volume directories, counted up to `enough`.
size_t count_packs(const fs::path& data, size_t enough) {
  size_t n = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(data / "volumes", ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->path().extension() == ".pack" && ++n >= enough) break;
  }
  return n;
}

/// Refuses a data directory that another user owns (as root, writing into it would
/// follow links that user planted), and closes one that others may read.
void check_owner(const fs::path& data) {
  struct stat st {};
  if (::lstat(data.c_str(), &st) != 0) {
    if (errno == ENOENT) return;
    throw_errno(ErrorKind::failed, "data directory " + data.string());
  }
  if (S_ISLNK(st.st_mode) && ::stat(data.c_str(), &st) != 0)
    throw Error(ErrorKind::not_found, "data directory " + data.string() + " is a symlink to nothing");
  if (!S_ISDIR(st.st_mode)) throw Error(ErrorKind::usage, "data directory " + data.string() + " is not a directory");
  if (st.st_uid != ::geteuid())
    throw Error(ErrorKind::permission, "data directory " + data.string() + " is owned by uid " + std::to_string(st.st_uid) +
                                           ", not by this user (uid " + std::to_string(::geteuid()) + "): refused");
  if ((st.st_mode & 077) != 0) ::chmod(data.c_str(), 0700);  // fails harmlessly on a read-only store
}

/// True when DATA is on a read-only filesystem (a backup disk mounted ro, a snapshot).
bool read_only_fs(const fs::path& data) {
  struct statvfs vfs {};
  return ::statvfs(data.c_str(), &vfs) == 0 && (vfs.f_flag & ST_RDONLY);
}

std::unique_ptr<catalog::Catalog> open_catalog(const fs::path& data, bool create, OrphanPacks orphans) {
  check_owner(data);
  if (read_only_fs(data)) {
    fs::path file = data / "catalog.db";
    std::error_code ec;
    if (!fs::exists(file, ec) || fs::file_size(file, ec) == 0)
      throw Error(ErrorKind::integrity, "data directory " + data.string() + " is read-only and has no catalog");
    return catalog::open(file.string(), false, catalog::Access::read_only);
  }
  if (create) util::make_dirs(data, 0700);
  fs::path file = data / "catalog.db";
  std::error_code ec;
  bool fresh = !fs::exists(file, ec) || fs::file_size(file, ec) == 0;
  if (fresh) {
    // A catalog that is gone (or emptied) while packs remain is damage, not a new
    // store: setting one up would hide every snapshot the packs hold.
    if (size_t packs = count_packs(data, 1000); packs > 0 && orphans == OrphanPacks::refuse)
      throw Error(ErrorKind::integrity,
                  "data directory " + data.string() + ": catalog.db is " + (fs::exists(file, ec) ? "empty" : "missing") +
                      " but " + std::to_string(packs) + (packs >= 1000 ? "+" : "") +
                      " pack files remain; restore catalog.db from a backup, or run 'mirage-serverd repair --data " +
                      data.string() + "' to index the packs again in a new catalog");
    if (!create && orphans == OrphanPacks::refuse)
      throw Error(ErrorKind::not_found, "data directory " + data.string() + ": no catalog (run 'mirage-serverd init')");
    if (orphans == OrphanPacks::adopt) create = true;
  }
  return catalog::open(file.string(), create);
}

}  // namespace

void to_json(nlohmann::json& j, const RepairReport& r) {
  j = {{"packs_scanned", r.packs_scanned},     {"packs_added", r.packs_added},
       {"chunks_indexed", r.chunks_indexed},   {"entries_dropped", r.entries_dropped},
       {"damaged_records", r.damaged_records}, {"notes", nlohmann::json::array()}};
  for (const auto& p : r.notes) j["notes"].push_back({{"what", p.what}, {"name", p.name}, {"message", p.message}});
}

void to_json(nlohmann::json& j, const CheckReport& r) {
  j = {{"ok", r.problems.empty()}, {"packs", r.packs},   {"chunks", r.chunks},
       {"snapshots", r.snapshots}, {"trees", r.trees},   {"bytes_read", r.bytes_read},
       {"problems", nlohmann::json::array()}};
  for (const auto& p : r.problems) j["problems"].push_back({{"what", p.what}, {"name", p.name}, {"message", p.message}});
  j["notes"] = nlohmann::json::array();
  for (const auto& p : r.notes) j["notes"].push_back({{"what", p.what}, {"name", p.name}, {"message", p.message}});
}

VerifiedUpload verify_upload(std::span<const uint8_t> blob, UploadCheck check) {
  VerifiedUpload out;
  out.bytes = blob;
  RecordReader reader(blob, "upload");
  std::vector<uint8_t> scratch;
  size_t at = 0;
  while (auto rec = reader.next()) {
    if (check == UploadCheck::full)
      verify_record(*rec, scratch, "upload");
    else
      check_record_framing(*rec, "upload");
    out.records.push_back({rec->id, at, static_cast<uint32_t>(rec->data.size()), rec->raw_size, rec->codec});
    at += k_record_header + rec->data.size();
  }
  return out;
}

VerifiedUpload verify_upload(std::vector<uint8_t>&& blob, UploadCheck check) {
  VerifiedUpload out = verify_upload(std::span<const uint8_t>(blob), check);
  out.owned = std::move(blob);  // a moved vector keeps its buffer: `bytes` stays valid
  return out;
}

Repository::Repository(fs::path data, bool create, OrphanPacks orphans, const std::string& first_volume)
    : m_data(fs::absolute(data)),  // volume paths are made from it
      m_catalog_owned(open_catalog(m_data, create, orphans)),
      m_catalog(*m_catalog_owned) {
  // SQLite makes its files with the umask's mode; a catalog names every file it holds.
  for (const char* suffix : {"", "-wal", "-shm"}) ::chmod((m_data / "catalog.db").string().append(suffix).c_str(), 0600);
  if (read_only_fs(m_data)) return;  // read-only: checked and restored from, never written
  if (m_catalog.volumes().empty()) {
    // Several server processes may open a new data directory at once: check and add
    // under one write lock so there is exactly one volume 0.
    catalog::Transaction tx(m_catalog);
    if (m_catalog.volumes().empty())  // (a volume that cannot be made rolls its row back)
      volume(m_catalog.add_volume(first_volume.empty() ? std::string(k_volume_zero) : first_volume)).init();
    tx.commit();
  }
}

Repository::~Repository() {
  for (auto& [volume, w] : m_writers) end_pack(w, false);
}

void Repository::end_pack(Writer& w, bool failed) noexcept {
  if (!w.out) return;
  try {
    if (failed)
      w.out->abandon();
    else
      w.out->seal();
    m_catalog.seal_pack(w.pack);
  } catch (const std::exception&) {  // GC treats a pack idle past its grace as sealed anyway
  }
  w.out.reset();
}

std::vector<catalog::Volume> Repository::volumes() {
  auto vols = m_catalog.volumes();
  for (auto& v : vols) {
    fs::path path(v.path);
    if (v.path.find("://") != std::string::npos) continue;  // a URL: mem://, file:///
    if (path.is_relative()) {
      v.path = (m_data / path).string();
    } else if (&v == &vols.front() && path.filename() == "0" && path.parent_path().filename() == "volumes") {
      // Volume 0 of a store made before it was named relative to DATA: an absolute path
      // to where DATA was then. A copy or move of DATA must never reach the original's
      // packs (a copy without them finds its packs missing: check says so).
      v.path = (m_data / k_volume_zero).string();
    }
  }
  return vols;
}

std::optional<int64_t> Repository::volume_at(const std::string& path) {
  std::error_code ec;  // a directory that does not exist is only its own name
  for (const auto& v : volumes())
    if (v.path == path || fs::equivalent(v.path, path, ec)) return v.id;
  return std::nullopt;
}

Volume& Repository::volume(int64_t id) {
  if (auto it = m_volumes.find(id); it != m_volumes.end()) return *it->second;
  for (const auto& v : volumes())
    if (v.id == id) return *m_volumes.emplace(id, open_volume(v.path)).first->second;
  throw Error(ErrorKind::integrity, "unknown volume " + std::to_string(id));
}

Volume& Repository::pack_volume(const catalog::Pack& pack) {
  try {
    return volume(pack.volume);
  } catch (const Error&) {
    rethrow_with_context("pack " + pack.name);
  }
}

int64_t Repository::choose_volume() {
  int64_t best = 0;
  uint64_t best_free = 0;
  for (const auto& v : volumes()) {
    if (v.read_only) continue;
    uint64_t free = 0;
    try {
      free = volume(v.id).usage().free_bytes;
    } catch (const Error&) {  // a volume that cannot tell counts as full
    }
    if (!best || free > best_free) {
      best = v.id;
      best_free = free;
    }
  }
  if (!best) throw Error(ErrorKind::precondition, "no writable storage volume (see mirage volume list)");
  return best;
}

Repository::Writer& Repository::writer(int64_t volume, uint64_t bytes) {
  bool usable = false;
  for (const auto& v : m_catalog.volumes())
    if (v.id == volume && !v.read_only) usable = true;
  if (!usable) volume = choose_volume();
  Writer& w = m_writers[volume];
  w.volume = volume;
  if (!w.out || (w.size > k_pack_magic.size() && w.size + bytes > k_pack_target)) open_new_pack(w);
  return w;
}

void Repository::open_new_pack(Writer& w) {
  end_pack(w, false);
  // The pack exists, durably and with its header, before the catalog names it; a pack
  // that cannot get that far (a full disk) is removed again, not left for check to find.
  auto& vol = volume(w.volume);
  auto out = vol.create_pack();
  uint64_t size = 0;
  int64_t pack = 0;
  try {
    out->append(std::span(reinterpret_cast<const uint8_t*>(k_pack_magic.data()), k_pack_magic.size()));
    size = out->durable();
    pack = m_catalog.add_pack(out->name(), w.volume);  // a full catalog disk fails here
  } catch (const Error&) {
    out->abandon();
    try {
      vol.remove(out->name());
    } catch (const Error&) {  // check reports a pack the catalog does not know
    }
    throw;
  }
  w.pack = pack;
  w.size = size;
  w.out = std::move(out);
}

uint64_t Repository::append(Writer& w, std::span<const std::span<const uint8_t>> runs) {
  uint64_t at = w.size, end = at;
  try {
    // The writer's offsets are checked, not assumed: a record indexed where it is not
    // is lost for good (no sync uploads a chunk the index says it has).
    auto expect = [&](uint64_t got, const char* what) {
      if (got != end)
        throw Error(ErrorKind::failed, "pack " + w.out->name() + ": " + what + " at " + std::to_string(got) + ", expected " +
                                           std::to_string(end));
    };
    for (auto run : runs) {
      expect(w.out->append(run), "append");
      end += run.size();
    }
    expect(w.out->durable(), "durable length");  // once for the whole batch
  } catch (const Error&) {
    // Failed midway (a full disk, an I/O error): the runs already placed must not shift
    // the next batch's offsets, so the pack ends at its durable length.
    end_pack(w, true);
    throw;
  }
  w.size = end;
  return at;
}

std::vector<bool> Repository::missing(std::span<const Digest> ids) {
  catalog::Transaction reads(m_catalog, catalog::Transaction::Mode::read);  // one lock, not one per id
  auto found = m_catalog.chunks().find_chunks(ids);
  std::vector<bool> out(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) out[i] = !found[i].has_value();
  return out;
}

PutStats Repository::put(const VerifiedUpload& upload, int64_t volume) {
  PutStats stats;
  stats.chunks = upload.size();
  // Runs of new records, as they lie in the upload: appended without a copy.
  std::vector<std::span<const uint8_t>> runs;
  std::vector<std::pair<Digest, catalog::ChunkLocation>> index;
  std::unordered_set<Digest, util::DigestHash> seen;
  std::vector<std::optional<catalog::ChunkLocation>> stored;  // as the upload began
  {
    std::vector<Digest> ids;
    ids.reserve(upload.size());
    for (const auto& r : upload.records) ids.push_back(r.id);
    catalog::Transaction lookups(m_catalog, catalog::Transaction::Mode::read);
    stored = m_catalog.chunks().find_chunks(ids);
  }
  size_t i = 0;
  while (i < upload.size()) {
    // One batch: the new records that fit in what is left of a pack. (A record another
    // upload stored meanwhile is written twice; the index keeps the first, GC the rest.)
    runs.clear();
    index.clear();
    uint64_t batch = 0;
    for (; i < upload.size() && batch < k_pack_target / 2; ++i) {
      const auto& r = upload.records[i];
      if (stored[i] || !seen.insert(r.id).second) continue;
      size_t len = k_record_header + r.stored;
      index.push_back({r.id, {0, batch, r.stored, r.raw_size, static_cast<uint8_t>(r.codec)}});
      const uint8_t* at = upload.bytes.data() + r.offset;
      if (!runs.empty() && runs.back().data() + runs.back().size() == at)
        runs.back() = {runs.back().data(), runs.back().size() + len};
      else
        runs.emplace_back(at, len);
      batch += len;
      stats.new_chunks++;
      stats.raw_bytes += r.raw_size;
    }
    if (index.empty()) continue;
    for (int attempt = 0;; ++attempt) {
      Writer& w = writer(volume, batch);
      uint64_t at = append(w, runs);
      for (auto& [id, loc] : index) {
        loc.pack = w.pack;
        loc.offset += at;
      }
      // Indexed up to what the writer made durable, and no further.
      if (m_catalog.add_chunks(index, w.pack, w.size)) break;
      // GC retired this pack while we were idle (it took us for gone): write the
      // batch again into a new one.
      for (auto& [id, loc] : index) loc.offset -= at;
      w.out.reset();  // retired: not ours to seal
      if (attempt == 2) throw Error(ErrorKind::failed, "pack " + std::to_string(w.pack) + " retired while being written");
    }
    stats.stored_bytes += batch;
  }
  return stats;
}

PackReader& Repository::pack_reader(int64_t pack_id) {
  auto it = m_readers.find(pack_id);
  if (it != m_readers.end()) return *it->second;
  auto pack = m_catalog.pack(pack_id);
  if (!pack) throw Error(ErrorKind::integrity, "index names pack " + std::to_string(pack_id) + " which is not in the catalog");
  std::unique_ptr<PackReader> reader;
  try {
    reader = pack_volume(*pack).open_pack(pack->name);
  } catch (const Error& e) {
    // Indexed but gone or unreadable: the store is damaged, whatever the volume says.
    throw Error(ErrorKind::integrity, e.what());
  }
  if (m_readers.size() > 256) m_readers.clear();
  return *m_readers.emplace(pack_id, std::move(reader)).first->second;
}

void Repository::read_record(const Digest& id, std::vector<uint8_t>& out) {
  auto loc = m_catalog.find_chunk(id);
  if (!loc) throw Error(ErrorKind::not_found, "chunk " + id.hex() + ": not in the store");
  read_moving(id, *loc, out);
}

void Repository::read_moving(const Digest& id, const catalog::ChunkLocation& loc, std::vector<uint8_t>& out) {
  try {
    read_record_at(id, loc, out);
  } catch (const Error&) {
    // GC may have moved the chunk to another pack (and deleted this one) since we
    // looked it up: look again, and fail only if it has not moved.
    auto again = m_catalog.find_chunk(id);
    if (!again || (again->pack == loc.pack && again->offset == loc.offset)) throw;
    read_record_at(id, *again, out);
  }
}

void Repository::read_record_at(const Digest& id, const catalog::ChunkLocation& loc, std::vector<uint8_t>& out) {
  PackReader& reader = pack_reader(loc.pack);
  size_t at = out.size();
  size_t len = k_record_header + loc.stored;
  out.resize(at + len);
  size_t n = 0;
  try {
    n = reader.read_some(loc.offset, std::span(out).subspan(at));
  } catch (const Error&) {
    out.resize(at);
    throw;
  }
  // The pack's name costs a catalog query: only a failure looks it up.
  auto fail = [&](const std::string& why) {
    out.resize(at);
    auto p = m_catalog.pack(loc.pack);
    throw Error(ErrorKind::integrity, "pack " + (p ? p->name : std::to_string(loc.pack)) + ": " + why);
  };
  if (n != len)
    fail("chunk " + id.hex() + " at offset " + std::to_string(loc.offset) + " is truncated");
  Record rec;
  try {
    rec = parse_record(std::span(out).subspan(at), "record");
  } catch (const Error& e) {
    fail(e.what());
  }
  if (rec.id != id || rec.raw_size != loc.raw || rec.data.size() != loc.stored ||
      static_cast<uint8_t>(rec.codec) != loc.codec)
    fail("record at offset " + std::to_string(loc.offset) + " does not match the index entry of chunk " + id.hex());
}

void Repository::read_records(std::span<const Digest> ids, std::vector<uint8_t>& out) {
  std::vector<std::pair<catalog::ChunkLocation, Digest>> wanted;
  wanted.reserve(ids.size());
  {
    catalog::Transaction reads(m_catalog, catalog::Transaction::Mode::read);
    for (const auto& id : ids) {
      auto loc = m_catalog.find_chunk(id);
      if (!loc) throw Error(ErrorKind::not_found, "chunk " + id.hex() + ": not in the store");
      wanted.push_back({*loc, id});
    }
  }
  std::sort(wanted.begin(), wanted.end(), [](const auto& a, const auto& b) {
    return std::tie(a.first.pack, a.first.offset) < std::tie(b.first.pack, b.first.offset);
  });
  // Announce the whole batch first, range by merged range, so the kernel queues the
  // reads ahead of us (a cold restore is bound by the disk, which wants a deep queue).
  for (size_t i = 0; i < wanted.size();) {
    const auto& start = wanted[i].first;
    uint64_t end = start.offset + k_record_header + start.stored;
    size_t j = i + 1;
    for (; j < wanted.size() && wanted[j].first.pack == start.pack && wanted[j].first.offset <= end + (1u << 20); ++j)
      end = std::max<uint64_t>(end, wanted[j].first.offset + k_record_header + wanted[j].first.stored);
    try {
      pack_reader(start.pack).will_need(start.offset, end - start.offset);
    } catch (const Error&) {  // moved by GC: read_moving finds it
    }
    i = j;
  }
  // The reply's size is known: one allocation, not a copy each time it doubles.
  size_t total = out.size();
  for (size_t i = 0; i < wanted.size(); ++i)
    if (!i || wanted[i].second != wanted[i - 1].second) total += k_record_header + wanted[i].first.stored;
  out.reserve(total);
  for (size_t i = 0; i < wanted.size(); ++i) {
    if (i && wanted[i].second == wanted[i - 1].second) continue;
    read_moving(wanted[i].second, wanted[i].first, out);
  }
}

std::vector<uint8_t> Repository::read_plain(const Digest& id) {
  std::vector<uint8_t> buf;
  read_record(id, buf);
  return open_record(parse_record(buf, "chunk"), "chunk " + id.hex());
}

}  // namespace mirage::store

namespace mirage::store {

RepairReport Repository::repair(const std::function<void(uint64_t, uint64_t)>& progress) {
  RepairReport report;
  std::map<std::string, catalog::Pack> by_name;
  std::map<int64_t, catalog::Pack> by_id;
  for (const auto& p : m_catalog.packs()) {
    by_name[p.name] = p;
    by_id[p.id] = p;
  }
  // 1. Entries that cannot be read are dropped (the chunk counts as not stored, so
  //    the next upload that has it sends it again; step 2 may find it in another pack).
  std::vector<Digest> drop;
  std::vector<uint8_t> buf;
  m_catalog.chunks().for_each_chunk([&](const Digest& id, const catalog::ChunkLocation& loc) {
    try {
      if (!by_id.count(loc.pack)) throw Error(ErrorKind::integrity, "its pack " + std::to_string(loc.pack) + " is not in the catalog");
      buf.clear();
      read_record_at(id, loc, buf);
      open_record(parse_record(buf, "record"), "record");
    } catch (const Error& e) {
      drop.push_back(id);
      if (report.notes.size() < 100) report.notes.push_back({"chunk", id.hex(), std::string("dropped from the index: ") + e.what()});
    }
  });
  if (!drop.empty()) {
    catalog::Transaction tx(m_catalog);
    m_catalog.chunks().delete_chunks(drop);
    tx.commit();
    report.entries_dropped = drop.size();
  }
  close_read_fds();
  // 2. Every pack file on every volume: verified records that are not indexed are.
  std::vector<std::pair<int64_t, PackListing>> files;
  for (const auto& v : volumes())
    for (auto& f : volume(v.id).list()) files.push_back({v.id, std::move(f)});
  uint64_t done = 0;
  for (const auto& [vol_id, file] : files) {
    if (progress) progress(done++, files.size());
    report.packs_scanned++;
    const std::string& name = file.name;
    Volume& vol = volume(vol_id);
    if (name.size() != 32 || name.find_first_not_of("0123456789abcdef") != std::string::npos ||
        file.location != vol.location(name)) {
      report.notes.push_back({"pack", name, "not named or placed as a pack file (" + file.location + "); left alone"});
      continue;
    }
    std::vector<uint8_t> bytes;
    try {
      auto reader = vol.open_pack(name);
      bytes.resize(reader->size());
      bytes.resize(reader->read_some(0, bytes));
    } catch (const Error& e) {
      report.notes.push_back({"pack", name, e.what()});
      continue;
    }
    if (bytes.size() < k_pack_magic.size() || !std::equal(k_pack_magic.begin(), k_pack_magic.end(), bytes.begin())) {
      report.notes.push_back({"pack", name, "bad header: not a pack file, left alone"});
      continue;
    }
    int64_t pack_id;
    uint64_t indexed_size = 0;
    if (auto it = by_name.find(name); it != by_name.end()) {
      pack_id = it->second.id;
      indexed_size = it->second.size;
    } else {
      pack_id = m_catalog.add_pack(name, vol_id);
      m_catalog.seal_pack(pack_id);
      report.packs_added++;
      report.notes.push_back({"pack", name, "was not in the catalog; indexed"});
    }
    auto data = std::span<const uint8_t>(bytes);
    std::vector<std::pair<Digest, catalog::ChunkLocation>> index;
    size_t at = k_pack_magic.size();
    while (at < data.size()) {
      Record rec;
      try {
        rec = parse_record(data.subspan(at), "pack " + name);
        open_record(rec, "pack " + name);
      } catch (const Error& e) {
        if (at >= indexed_size) {
          // Past what the catalog indexed: a write cut short (a crash, a full disk), not
          // damage. Nothing refers to it; GC's repack drops it with the pack.
          report.notes.push_back({"pack", name, "an unfinished write of " + std::to_string(data.size() - at) +
                                                    " bytes at offset " + std::to_string(at) +
                                                    ", past what was indexed (a write cut short); not indexed"});
          break;
        }
        report.damaged_records++;
        report.notes.push_back({"pack", name, "damaged record at offset " + std::to_string(at) + ", the rest is not read: " + e.what()});
        break;
      }
      if (!m_catalog.find_chunk(rec.id))
        index.push_back({rec.id, {pack_id, at, static_cast<uint32_t>(rec.data.size()), rec.raw_size, static_cast<uint8_t>(rec.codec)}});
      at += k_record_header + rec.data.size();
    }
    std::erase_if(index, [seen = std::unordered_set<Digest, util::DigestHash>()](const auto& e) mutable {
      return !seen.insert(e.first).second;
    });
    if (!index.empty() && !m_catalog.add_chunks(index, pack_id, std::max<uint64_t>(indexed_size, at)))
      report.notes.push_back({"pack", name, "retired by GC meanwhile; not indexed"});
    else
      report.chunks_indexed += index.size();
  }
  if (progress) progress(files.size(), files.size());
  return report;
}

}  // namespace mirage::store

namespace mirage::store {

void Repository::note_commit(const std::string& snapshot, const std::string& device) {
  util::AtomicFile f(m_data / "last-commit", 0600);
  f.write(nlohmann::json{{"snapshot_id", snapshot}, {"device_id", device}}.dump() + "\n");
  f.commit();
}

}  // namespace mirage::store
