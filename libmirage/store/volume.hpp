#pragma once
// A storage volume: where pack files live, behind one interface so that a local
// directory, memory (tests) and later an object store hold packs alike.
//
// Addressed by URL, as the catalog's volumes.path column stores it:
//   /abs/dir or file:///abs/dir   a local directory: DIR/packs/ab/ab12….pack
//   mem://name                    in memory, shared by every Volume of that name in
//                                 the process (two Repository objects in one test)
//
// A pack is written by one PackWriter, append-only: append() places bytes at the end,
// durable() makes everything appended so far survive a crash and returns that length,
// seal() ends the pack (a directory has nothing more to do; an object store uploads
// here); abandon() ends it at its durable length after a failed write. Nothing may index a record beyond the length durable() last returned. Readers
// may read a pack while its writer appends (they see at least what was made durable).
// The volume knows nothing of the pack format (store/repository.hpp writes it).
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace mirage::store {

/// Appends to one new pack. Not thread-safe; one writer per pack.
class PackWriter {
 public:
  virtual ~PackWriter() = default;
  /// The pack's name: 32 lowercase hex digits (128 random bits).
  virtual const std::string& name() const = 0;
  /// Places `bytes` at the end of the pack; returns the offset they start at. They are
  /// durable only after durable(). Throws Error(precondition) once sealed.
  virtual uint64_t append(std::span<const uint8_t> bytes) = 0;
  /// Makes everything appended durable (for a directory: fdatasync, and the first time
  /// also the directory holding the new file); returns the durable length.
  virtual uint64_t durable() = 0;
  /// Everything appended so far, durable or not.
  virtual uint64_t size() const = 0;
  /// Makes the pack durable and ends it; later appends throw. Calling it again does nothing.
  virtual void seal() = 0;
  /// After an append or durable() failed (a full disk, an I/O error): drops whatever was
  /// appended since the last durable() (the pack keeps that length, nothing indexed is
  /// lost) and ends the writer as seal() does, so that a failed write is neither left as
  /// a tail nothing indexes nor taken for the start of the next append. Never throws:
  /// when the bytes cannot be dropped they stay, unindexed, until GC repacks the pack.
  virtual void abandon() noexcept = 0;
};

/// Reads one pack; safe to keep open while the pack is being appended or removed
/// (a removed pack stays readable through a reader opened before).
class PackReader {
 public:
  virtual ~PackReader() = default;
  /// The pack's name.
  virtual const std::string& name() const = 0;
  /// Reads up to out.size() bytes at `offset`; returns how many (fewer only at the
  /// pack's end). Throws Error(integrity) on an I/O error.
  virtual size_t read_some(uint64_t offset, std::span<uint8_t> out) = 0;
  /// The pack's length now.
  virtual uint64_t size() = 0;
  /// A hint that [offset, offset + length) is read soon (a directory asks the kernel
  /// to read ahead); does nothing by default.
  virtual void will_need(uint64_t offset, uint64_t length) {
    (void)offset;
    (void)length;
  }
  /// Reads exactly out.size() bytes at `offset`; throws Error(integrity) naming the
  /// pack when the range runs past its end (a truncated pack).
  void read(uint64_t offset, std::span<uint8_t> out);
};

/// One pack file as list() finds it.
struct PackListing {
  std::string name;      ///< the file's name without ".pack"; a valid pack name is 32 hex digits
  std::string location;  ///< where it is, for messages (a path, a URL); equals location(name) when placed right
};

struct VolumeUsage {
  uint64_t used_bytes = 0;  ///< bytes in use where the packs are (a directory: its filesystem's)
  uint64_t free_bytes = 0;  ///< bytes that may still be written (a directory: available to this user)
};

class Volume {
 public:
  virtual ~Volume() = default;
  /// The URL or path it was opened from, as given.
  virtual const std::string& url() const = 0;
  /// Makes the volume ready to hold packs (a directory: DIR/packs, mode 0700); nothing
  /// when it is. Throws Error(permission/not_found/failed) naming it.
  virtual void init() = 0;
  /// Starts a new pack named by 128 random bits (a file of mode 0600, created
  /// exclusively); it is empty until appended to.
  virtual std::unique_ptr<PackWriter> create_pack() = 0;
  /// Opens pack `name` for reading; throws Error(not_found) when it does not exist,
  /// Error(integrity) when it cannot be opened.
  virtual std::unique_ptr<PackReader> open_pack(const std::string& name) = 0;
  /// Removes pack `name`; returns false when it was not there.
  virtual bool remove(const std::string& name) = 0;
  /// Every pack the volume holds, those placed wrong included (check and repair report
  /// them); empty for a volume that has none or does not exist.
  virtual std::vector<PackListing> list() = 0;
  /// Space used and free; throws Error naming the volume when it cannot tell.
  virtual VolumeUsage usage() = 0;
  /// Where pack `name` is, for messages (DIR/packs/ab/ab….pack, mem://n/ab….pack).
  virtual std::string location(const std::string& name) const = 0;

  /// Reads [offset, offset + length) of pack `name`: open_pack then read.
  std::vector<uint8_t> read(const std::string& name, uint64_t offset, uint64_t length);
};

/// Opens the volume at `url` (see the top of this file); does not create anything.
/// Throws Error(usage) naming it for an unknown scheme or a path that is not absolute.
std::unique_ptr<Volume> open_volume(const std::string& url);

/// The two implementations open_volume() chooses from (volume_file.cpp, volume_memory.cpp).
std::unique_ptr<Volume> open_file_volume(const std::string& url, const std::string& dir);
std::unique_ptr<Volume> open_memory_volume(const std::string& url, const std::string& name);

/// Forgets in-memory volume `name` and its packs (the next open of mem://name starts
/// empty); Volumes and readers already open keep what they hold.
void drop_memory_volume(const std::string& name);
/// Sets how many bytes in-memory volume `name` may hold in all (default 1 TiB), which
/// its usage() reports: the test seam for "the volume with the most free space".
void set_memory_volume_capacity(const std::string& name, uint64_t bytes);
/// What a power cut does to in-memory volume `name`: every pack loses what was appended
/// after its writer's last durable().
void crash_memory_volume(const std::string& name);

}  // namespace mirage::store
