#pragma once
// A server's data directory: the catalog and its storage volumes of pack files.
//
// Layout:
//   DATA/catalog.db                       SQLite catalog (WAL)
//   DATA/volumes/0/packs/ab/ab12….pack    pack files, named by 128 random bits
// Volume 0 is DATA/volumes/0 unless the first open names another URL; every volume,
// and every byte of a pack, is reached through store/volume.hpp.
//
// Pack file: the 8-byte magic "MPACK01\n", then records (store/record.hpp) back to
// back. Packs are append-only while open and immutable once rotated (at ~32 MiB).
// Records are appended and made durable (PackWriter::durable) before the catalog
// indexes them, never beyond the length durable() returned, so a crash leaves at worst
// an unindexed tail, which is ignored (packs.size marks the end of the indexed part).
// Every process writes its own packs, so concurrent writers never share a file.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "libmirage/catalog/catalog.hpp"
#include "libmirage/store/gc.hpp"
#include "libmirage/store/record.hpp"
#include "libmirage/store/volume.hpp"
#include "libmirage/util/fd.hpp"

namespace mirage::store {

constexpr std::string_view k_pack_magic = "MPACK01\n";
constexpr uint64_t k_pack_target = 32u << 20;
/// Where volume 0 is, relative to the data directory (and so named in the catalog).
constexpr std::string_view k_volume_zero = "volumes/0";

/// A bulk upload whose every record passed verification. Its records stay where they
/// arrived (views into `bytes`): put() appends runs of them to a pack without copying.
struct VerifiedUpload {
  struct Item {
    Digest id;
    size_t offset = 0;    ///< of the record (header) in `bytes`
    uint32_t stored = 0;  ///< length of its data after the header
    uint32_t raw_size = 0;
    Codec codec = Codec::raw;
  };
  std::vector<uint8_t> owned;      ///< the upload when it was handed over, else empty
  std::span<const uint8_t> bytes;  ///< the upload (in `owned`, or the caller's buffer)
  std::vector<Item> records;

  size_t size() const { return records.size(); }
};

/// How much of an upload the server checks before it stores it.
enum class UploadCheck {
  full,     ///< every record decoded and its id recomputed: a forged or corrupt chunk is refused
  framing,  ///< records parsed and each zstd frame's declared size checked, nothing decoded:
            ///< for the store's owner (the stdio client, who could write the packs itself);
            ///< its chunks are verified when read (restore, `mirage check --read-data`)
};

/// Parses and verifies a bulk upload (by default decoding every record and recomputing
/// its id); throws Error(integrity) naming the first forged or malformed chunk.
/// Thread-safe. The result views `blob`, which must outlive it; the overload taking a
/// vector by rvalue keeps it.
VerifiedUpload verify_upload(std::span<const uint8_t> blob, UploadCheck check = UploadCheck::full);
VerifiedUpload verify_upload(std::vector<uint8_t>&& blob, UploadCheck check = UploadCheck::full);

struct PutStats {
  uint64_t chunks = 0;        ///< records received
  uint64_t new_chunks = 0;    ///< records not already stored
  uint64_t stored_bytes = 0;  ///< bytes appended to packs
  uint64_t raw_bytes = 0;     ///< plaintext bytes of the new chunks
};

struct CheckProblem {
  std::string what;     ///< "pack", "chunk", "snapshot", "tree"
  std::string name;     ///< the pack name, chunk id or snapshot id
  std::string message;
};

struct CheckReport {
  uint64_t packs = 0;
  uint64_t chunks = 0;
  uint64_t snapshots = 0;
  uint64_t trees = 0;
  uint64_t bytes_read = 0;
  std::vector<CheckProblem> problems;  ///< damage: check fails (exit 6)
  /// Not damage, but worth knowing: pack files the catalog does not know (a process
  /// killed between making a pack file and indexing it leaves one; nothing indexed is
  /// in it, and check --repair indexes what it holds).
  std::vector<CheckProblem> notes;
};
void to_json(nlohmann::json& j, const CheckReport& r);

/// What `check --repair` did: packs it read, packs the catalog did not know (now
/// indexed), chunks indexed again, index entries dropped (their pack gone or their
/// record damaged), and records it could not use (a damaged tail ends a pack's scan).
struct RepairReport {
  uint64_t packs_scanned = 0;
  uint64_t packs_added = 0;
  uint64_t chunks_indexed = 0;
  uint64_t entries_dropped = 0;
  uint64_t damaged_records = 0;
  std::vector<CheckProblem> notes;
};
void to_json(nlohmann::json& j, const RepairReport& r);

/// Whether a data directory without a catalog but with pack files may be opened: only
/// `mirage-serverd repair` does, to index those packs into a new catalog.
enum class OrphanPacks { refuse, adopt };

class Repository {
 public:
  /// Opens DATA; when `create` is set a missing one is made (catalog + volume 0).
  /// Throws Error(not_found) when DATA holds no catalog and `create` is not set.
  /// Throws Error(integrity) when the catalog is missing or empty while pack files
  /// remain (unless `orphans` is adopt), Error(permission) when another user owns DATA.
  /// A catalog without volumes gets volume 0 at `first_volume` (a URL, store/volume.hpp;
  /// empty: DATA/volumes/0), e.g. mem://name for a test.
  Repository(std::filesystem::path data, bool create, OrphanPacks orphans = OrphanPacks::refuse,
             const std::string& first_volume = {});
  ~Repository();

  const std::filesystem::path& path() const { return m_data; }
  catalog::Catalog& catalog() { return m_catalog; }

  /// For each id, true when the store lacks it.
  std::vector<bool> missing(std::span<const Digest> ids);
  bool has(const Digest& id) { return m_catalog.find_chunk(id).has_value(); }
  /// Appends verified records that are not stored yet, durably, and indexes them, on
  /// `volume` (0, or a read-only one: the writable volume with the most free space).
  PutStats put(const VerifiedUpload& upload, int64_t volume = 0);
  /// The writable volume with the most free space; Error(precondition) if none is.
  int64_t choose_volume();
  /// Appends the stored record of `id` (header + data, as in the pack) to `out`;
  /// throws Error(not_found) when absent, Error(integrity) when the pack is damaged.
  void read_record(const Digest& id, std::vector<uint8_t>& out);
  /// Appends the stored records of `ids` to `out` in pack and offset order (sequential
  /// reads; records name themselves, so callers take them in any order), each once.
  void read_records(std::span<const Digest> ids, std::vector<uint8_t>& out);
  /// The verified plaintext of `id`.
  std::vector<uint8_t> read_plain(const Digest& id);

  /// Verifies packs, the index and every snapshot's references; with `read_data` also
  /// decodes every chunk and recomputes its id. `progress(done, total)` is called now
  /// and then.
  CheckReport check(bool read_data, const std::function<void(uint64_t, uint64_t)>& progress);

  /// Records `snapshot` of `device` as the newest commit, durably, outside the catalog
  /// (DATA/last-commit), so that check can tell when the catalog lost it (a damaged or
  /// deleted WAL drops the newest transactions without an error). Retention always keeps
  /// a device's newest snapshot, so the one named there is never expired.
  void note_commit(const std::string& snapshot, const std::string& device);

  /// Rebuilds the chunk index from the pack files (as restic rebuild-index): drops
  /// entries whose pack is gone or whose record is damaged, then reads every pack file
  /// on every volume (those the catalog lacks too), verifies each record and indexes
  /// the chunks not indexed. Snapshots that referenced lost chunks stay as they are;
  /// check reports them.
  RepairReport repair(const std::function<void(uint64_t, uint64_t)>& progress);

  /// Closes the pack files kept open for reading (they are opened again as needed),
  /// so that packs another process's GC deleted give their space back.
  void close_read_fds() { m_readers.clear(); }

  /// The volume with catalog id `id`; Error(integrity) when the catalog has none.
  Volume& volume(int64_t id);
  /// The catalog's volumes, each path as this process reaches it: volume 0 is
  /// DATA/volumes/0 wherever DATA is now (the catalog names it relative to DATA, so a
  /// moved or copied data directory uses its own packs, never the original's).
  std::vector<catalog::Volume> volumes();
  /// The id of the volume at directory `path`, named so or by another name (a symlink,
  /// a trailing '/'); none when the catalog has no volume there.
  std::optional<int64_t> volume_at(const std::string& path);

 private:
  friend class GarbageCollector;   // gc.cpp: repacks through the writers
  friend class RepositoryChecker;  // check.cpp
  /// read_record with the location already looked up.
  void read_record_at(const Digest& id, const catalog::ChunkLocation& loc, std::vector<uint8_t>& out);
  /// read_record_at, looking the chunk up again if GC moved it meanwhile.
  void read_moving(const Digest& id, const catalog::ChunkLocation& loc, std::vector<uint8_t>& out);
  /// The volume holding `pack`; Error(integrity) naming the pack when it is unknown.
  Volume& pack_volume(const catalog::Pack& pack);
  /// The reader of pack `pack_id`, kept open; Error(integrity) when it cannot be opened.
  PackReader& pack_reader(int64_t pack_id);

  /// The pack this process appends to on one volume.
  struct Writer {
    int64_t volume = 0;
    int64_t pack = 0;
    uint64_t size = 0;  ///< the durable length: what the catalog may index up to
    std::unique_ptr<PackWriter> out;
  };
  /// The writer for `volume` (resolved as put() does), with room for `bytes` more.
  Writer& writer(int64_t volume, uint64_t bytes);
  void open_new_pack(Writer& w);
  /// Ends w's pack (sealed; `failed`: abandoned at its durable length) in the volume and
  /// the catalog, as far as they let it; the next write opens a new one.
  void end_pack(Writer& w, bool failed) noexcept;
  /// Writes `runs` back to back at the writer's end and makes them durable; returns
  /// where the first starts. The catalog learns the new (durable) size from the
  /// caller, in the transaction that indexes. A write that fails ends the pack.
  uint64_t append(Writer& w, std::span<const std::span<const uint8_t>> runs);
  uint64_t append(Writer& w, std::span<const uint8_t> bytes) { return append(w, std::span(&bytes, 1)); }

  std::filesystem::path m_data;
  std::unique_ptr<catalog::Catalog> m_catalog_owned;
  catalog::Catalog& m_catalog;  ///< *m_catalog_owned
  std::map<int64_t, std::unique_ptr<Volume>> m_volumes;  ///< by volume id, opened as needed
  std::map<int64_t, Writer> m_writers;                   ///< by volume id
  std::map<int64_t, std::unique_ptr<PackReader>> m_readers;  ///< by pack id
};

}  // namespace mirage::store
