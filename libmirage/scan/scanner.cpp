#include "libmirage/scan/scanner.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <climits>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_set>

#include "libmirage/chunk/fastcdc.hpp"
#include "libmirage/store/record.hpp"
#include "libmirage/util/error.hpp"
#include "libmirage/util/fd.hpp"
#include "libmirage/util/xattr.hpp"

namespace mirage::scan {

namespace fs = std::filesystem;

void to_json(nlohmann::json& j, const ScanStats& s) {
  j = {{"files", s.files},           {"dirs", s.dirs},         {"symlinks", s.symlinks},
       {"others", s.others},         {"hardlinks", s.hardlinks}, {"bytes", s.bytes},
       {"files_read", s.files_read}, {"bytes_read", s.bytes_read}, {"chunks_new", s.chunks_new},
       {"bytes_new", s.bytes_new},   {"bytes_sent", s.bytes_sent}, {"trees_new", s.trees_new},
       {"skipped", s.skipped},       {"unreadable", s.unreadable}, {"unreadable_entries", s.unreadable_entries},
       {"warnings", s.warnings}};
}

void to_json(nlohmann::json& j, const Unreadable& u) { j = {{"path", u.path}, {"reason", u.reason}}; }

namespace {

int64_t ns(const timespec& ts) { return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec; }

constexpr size_t k_batch_bytes = 4u << 20;   // plaintext gathered before asking the server
constexpr size_t k_read_size = 1u << 20;

/// Objects gathered before asking the server which it lacks: their bytes back to back
/// in one buffer that is kept and reused (no allocation per chunk).
struct Batch {
  struct Item {
    Digest id;
    size_t offset, size;
  };
  std::vector<uint8_t> bytes;
  std::vector<Item> items;

  void add(const Digest& id, std::span<const uint8_t> data) {
    items.push_back({id, bytes.size(), data.size()});
    bytes.insert(bytes.end(), data.begin(), data.end());
  }
  std::span<const uint8_t> data(const Item& item) const { return std::span(bytes).subspan(item.offset, item.size); }
  bool empty() const { return items.empty(); }
  void clear() {
    bytes.clear();
    items.clear();
  }
};

/// One directory of the walk; a node is made after its parent's, so children follow parents.
struct DirNode {
  std::string path;  // root-relative, "/" for the root
  size_t parent = SIZE_MAX;
  size_t parent_entry = 0;
  std::vector<tree::Entry> entries;
  std::vector<FileStamp> stamps;  // parallel to entries; meaningful for files
};

struct FileJob {
  size_t entry;  // its index in its directory's entries
  // The entry itself, set once the directory's entries vector is complete (walkers keep
  // appending nodes while workers run: a worker never indexes the node vector).
  tree::Entry* target = nullptr;
  std::string relpath;  // relative to the root fd, no leading slash
  std::string path;     // root-relative with a leading slash (cache key, messages)
  FileStamp stamp;
  uint64_t seq = 0;     // its place in the queue (the prefetch's cursor compares it)
  bool sparse = false;  // its blocks cover less than its size: its holes are looked for
};

constexpr int k_open_flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;

/// Opens a path too long for one system call (PATH_MAX) a component at a time, each
/// directory with O_NOFOLLOW, so no symlink is followed on the way either.
int open_deep(int rootfd, const std::string& relpath) {
  util::Fd dir;
  int at = rootfd;
  size_t start = 0;
  for (size_t slash; (slash = relpath.find('/', start)) != std::string::npos; start = slash + 1) {
    std::string part = relpath.substr(start, slash - start);
    util::Fd next(::openat(at, part.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!next) return -1;
    dir = std::move(next);
    at = dir.get();
  }
  return ::openat(at, relpath.c_str() + start, k_open_flags);
}

/// One worker's put in flight: the worker reads, chunks and compresses its next batch
/// while the server verifies, writes and syncs this one (a put is mostly the server's
/// work and its fdatasync, time the worker's core would otherwise sit idle). At most one
/// per worker, so memory stays at two batches a worker. A put that fails reports it at
/// once through `on_error` (the pipeline stops every worker and the walk then), not only
/// when its worker next waits for it.
class PendingPut {
 public:
  PendingPut() = default;
  PendingPut(const PendingPut&) = delete;
  PendingPut& operator=(const PendingPut&) = delete;
  ~PendingPut() {
    try {
      wait();
    } catch (...) {  // already failing; the first error was recorded
    }
  }

  /// Waits for the previous put (rethrowing its error), then starts this one.
  void start(ChunkSink& sink, std::vector<uint8_t> records, const std::function<void()>& on_error) {
    wait();
    m_put = std::async(std::launch::async, [&sink, &on_error, r = std::move(records)]() mutable {
      try {
        sink.put(std::move(r));
      } catch (...) {
        on_error();  // inside the handler: std::current_exception() is this error
        throw;
      }
    });
  }

  /// Waits for the put in flight, if any; rethrows its error.
  void wait() {
    if (m_put.valid()) m_put.get();
  }

 private:
  std::future<void> m_put;
};

/// The holes of a sparse file, looked for as the read comes to them (SEEK_HOLE, then
/// SEEK_DATA: one look a hole however many there are), the read position put back after.
class Holes {
 public:
  Holes(int fd, bool sparse) : m_fd(fd), m_on(sparse) {}
  /// The end of the hole that holds all of [at, at + len), or 0 when none does; the next
  /// read() of the file continues at `read_at`.
  uint64_t end_if_inside(uint64_t at, uint64_t len, uint64_t read_at) {
    if (!m_on) return 0;
    if (at >= m_end) {  // past the hole known: the next one from here
      off_t hole = ::lseek(m_fd, static_cast<off_t>(at), SEEK_HOLE);
      off_t data = hole < 0 ? -1 : ::lseek(m_fd, hole, SEEK_DATA);
      if (hole >= 0 && data < 0 && errno == ENXIO) data = ::lseek(m_fd, 0, SEEK_END);  // a hole to the end
      bool put_back = ::lseek(m_fd, static_cast<off_t>(read_at), SEEK_SET) == static_cast<off_t>(read_at);
      if (hole < 0 || data < hole || !put_back) {  // a filesystem that cannot tell: read it all
        m_on = false;
        if (!put_back) throw_errno("seek back in a sparse file");
        return 0;
      }
      m_start = static_cast<uint64_t>(hole);
      m_end = std::max<uint64_t>(static_cast<uint64_t>(data), at + 1);
    }
    return m_start <= at && at + len <= m_end ? m_end : 0;
  }

 private:
  int m_fd;
  bool m_on;
  uint64_t m_start = 0, m_end = 0;
};

class Pipeline {
 public:
  Pipeline(const ScanOptions& opts, ChunkSink& sink, int rootfd) : m_opts(opts), m_sink(sink), m_rootfd(rootfd) {}

  void start() {
    unsigned n = std::max(1u, m_opts.threads);
    for (unsigned i = 0; i < n; ++i) m_threads.emplace_back([this] { worker(); });
    m_threads.emplace_back([this] { prefetcher(); });
  }

  /// Queues a directory's files (then empties `jobs`): one turn on the lock and one
  /// wake-up for them all, not one per file.
  void submit(std::vector<FileJob>& jobs) {
    if (jobs.empty()) return;
    {
      std::lock_guard lock(m_mutex);
      for (auto& job : jobs) {
        m_bytes_to_read.fetch_add(job.stamp.size, std::memory_order_relaxed);
        job.seq = m_submitted++;
        m_jobs.push_back(std::move(job));
      }
    }
    // Woken after the lock is let go (a worker woken under it would only wait for it).
    if (jobs.size() == 1)
      m_cv.notify_one();
    else
      m_cv.notify_all();
    // Only a prefetch with credit can act on a new file. Waking it for every file of a
    // warm run (no credit) cost two context switches and a turn on this lock per file.
    if (m_prefetch_credit.load(std::memory_order_relaxed) > 0) m_prefetch_cv.notify_one();
    jobs.clear();
  }

  /// Waits for every job; rethrows the first worker error.
  void finish(const std::function<void()>& tick) {
    {
      std::unique_lock lock(m_mutex);
      m_closed = true;
      m_cv.notify_all();
      m_prefetch_cv.notify_all();
    }
    for (;;) {
      {
        std::unique_lock lock(m_mutex);
        if (m_done_cv.wait_for(lock, std::chrono::milliseconds(250), [&] { return m_active == 0 && m_jobs.empty(); }))
          break;
      }
      if (tick) tick();
    }
    for (auto& t : m_threads) t.join();
    m_threads.clear();
    if (m_error) std::rethrow_exception(m_error);
  }

  ~Pipeline() {
    {
      std::lock_guard lock(m_mutex);
      m_closed = true;
      m_jobs.clear();
      m_cv.notify_all();
      m_prefetch_cv.notify_all();
    }
    for (auto& t : m_threads) t.join();
  }

  /// Sends a batch of objects the server may lack (used for trees too), then empties it;
  /// with `pending`, the put runs in the background (pending.wait() joins it). Once the
  /// pipeline has failed it only empties the batch: the scan ends with the first error.
  void upload(Batch& batch, std::atomic<uint64_t>* counter, PendingPut* pending = nullptr) {
    if (m_failed) batch.clear();
    if (batch.empty()) return;
    std::vector<Digest> ids;
    ids.reserve(batch.items.size());
    for (const auto& item : batch.items) ids.push_back(item.id);
    auto need = m_sink.missing(ids);
    size_t most = 0;  // a record is never larger than its header and plaintext
    for (size_t i = 0; i < batch.items.size(); ++i)
      if (need[i]) most += store::k_record_header + batch.items[i].size;
    std::vector<uint8_t> records;
    records.reserve(most);
    for (size_t i = 0; i < batch.items.size(); ++i) {
      if (!need[i]) continue;
      const auto& item = batch.items[i];
      store::append_plain(records, item.id, batch.data(item), m_opts.compression_level);
      m_chunks_new++;
      m_bytes_new += item.size;
      if (counter) (*counter)++;
    }
    if (!records.empty()) {
      m_bytes_sent += records.size();
      if (pending)
        pending->start(m_sink, std::move(records), m_on_put_error);
      else
        m_sink.put(std::move(records));
    }
    batch.clear();
  }

  /// True once a worker or a put has failed: the walk stops, the workers drop their jobs.
  bool failed() const { return m_failed; }

  /// True the first time this run sees `id` (so a chunk shared by two files is sent once).
  bool first_sighting(const Digest& id) {
    std::lock_guard lock(m_seen_mutex);
    return m_seen.insert(id).second;
  }

  std::atomic<uint64_t> m_files_read{0}, m_bytes_read{0}, m_chunks_new{0}, m_bytes_new{0}, m_bytes_sent{0};
  std::atomic<uint64_t> m_bytes_to_read{0};  ///< the walkers add, the progress reads
  std::mutex m_warn_mutex;
  std::vector<std::string> m_warnings;
  uint64_t m_unreadable = 0;
  std::vector<Unreadable> m_unreadable_entries;

  /// Counts and names an entry left out of the snapshot (any thread).
  void note_unreadable(const std::string& path, std::string reason) {
    std::lock_guard lock(m_warn_mutex);
    m_warnings.push_back(path + ": " + reason);
    m_unreadable++;
    if (m_unreadable_entries.size() < k_max_unreadable_listed) m_unreadable_entries.push_back({path, std::move(reason)});
  }
  std::vector<std::string> m_uncacheable;  // paths that changed while read

 private:
  void worker() {
    Batch batch;
    batch.bytes.reserve(k_batch_bytes + chunk::Params{}.max_size);
    std::vector<uint8_t> buf(k_read_size + chunk::Params{}.max_size);
    chunk::Chunker chunker;
    PendingPut pending;  // declared after the batch: destroyed (joined) first
    for (;;) {
      FileJob job;
      {
        std::unique_lock lock(m_mutex);
        m_cv.wait(lock, [&] { return m_closed || !m_jobs.empty(); });
        if (m_jobs.empty()) {
          // Closed: flush what this worker holds before leaving.
          lock.unlock();
          try {
            upload(batch, nullptr, &pending);
            pending.wait();
          } catch (...) {
            record_error();
          }
          return;
        }
        job = std::move(m_jobs.front());
        m_jobs.pop_front();
        m_active++;
        m_taken = job.seq + 1;
        bool moved = !m_window.empty() && m_window.front().first <= job.seq;  // the window ahead moves on
        for (; !m_window.empty() && m_window.front().first <= job.seq; m_window.pop_front()) m_ahead -= m_window.front().second;
        if (moved || (m_closed && m_taken == m_submitted)) m_prefetch_cv.notify_one();
      }
      try {
        if (!m_failed) process(job, chunker, buf, batch, pending);
      } catch (...) {
        record_error();
      }
      {
        std::lock_guard lock(m_mutex);
        m_active--;
        if (m_active == 0 && m_jobs.empty()) m_done_cv.notify_all();
      }
    }
  }

  /// Records the exception being handled (the first one wins) and stops the pipeline:
  /// queued jobs are dropped and every wait (finish, an idle worker) wakes.
  void record_error() {
    std::lock_guard lock(m_mutex);
    if (!m_error) m_error = std::current_exception();
    m_failed = true;
    m_jobs.clear();
    m_cv.notify_all();
    m_done_cv.notify_all();
    m_prefetch_cv.notify_all();
  }

  /// Asks the kernel to start reading the files next in the queue, up to k_prefetch_bytes
  /// ahead of the workers: with only the workers' own reads in flight, a first backup
  /// from a cold page cache waits on one small file's read at a time per worker. It runs
  /// only while workers find files out of the page cache (credit from their misses): with
  /// the data cached (a warm run) its opens would be CPU spent for nothing.
  void prefetcher() {
    std::unique_lock lock(m_mutex);
    for (;;) {
      // The queue's front is the job of seq m_taken (workers take it in order): the next
      // file to ask for is read there, not kept twice. None when the cursor is past the
      // queue's end (or the queue was emptied: a failure, the pipeline's destruction).
      auto queued_beyond = [&] { return std::max(m_prefetch_next, m_taken) - m_taken < m_jobs.size(); };
      m_prefetch_cv.wait(lock, [&] {
        return m_failed || (m_closed && !queued_beyond()) ||
               (queued_beyond() && m_ahead < k_prefetch_bytes && m_prefetch_credit.load(std::memory_order_relaxed) > 0);
      });
      // Done once the walk is over and no file is left to ask for.
      if (m_failed || !queued_beyond()) return;
      m_prefetch_next = std::max(m_prefetch_next, m_taken);
      const FileJob& next = m_jobs[m_prefetch_next - m_taken];
      uint64_t seq = m_prefetch_next++, bytes = std::min(next.stamp.size, k_prefetch_file);
      std::string relpath = next.relpath;
      m_prefetch_credit.fetch_sub(1, std::memory_order_relaxed);
      m_window.emplace_back(seq, bytes);
      m_ahead += bytes;
      lock.unlock();
      if (util::Fd fd(open_beneath(m_rootfd, relpath)); fd)
        ::posix_fadvise(fd.get(), 0, static_cast<off_t>(bytes), POSIX_FADV_WILLNEED);
      lock.lock();
    }
  }

  /// Whether the file's first page is in the page cache (a read that may not wait): a
  /// miss gives the prefetch credit for the next k_prefetch_credit files.
  void note_cache_probe(int fd) {
    uint8_t byte;
    iovec v{&byte, 1};
    if (::preadv2(fd, &v, 1, 0, RWF_NOWAIT) < 0 && errno == EAGAIN &&
        m_prefetch_credit.exchange(k_prefetch_credit, std::memory_order_relaxed) <= 0) {
      std::lock_guard lock(m_mutex);  // the prefetch may be waiting for credit
      m_prefetch_cv.notify_one();
    }
  }

  void warn(std::string message) {
    std::lock_guard lock(m_warn_mutex);
    m_warnings.push_back(std::move(message));
  }

  /// Reads the file at `fd` from its start (`again`: it was read before) to its end into
  /// `chunks` (`total` bytes), sending the chunks not seen yet. False when it could not
  /// be read (noted, the entry dropped) or the scan failed. A sparse file's holes are not read: where a chunk would
  /// start with a whole max_size of hole ahead, its chunks are the zero run's (the same
  /// cut points and ids as reading the zeros would give), so a 100 GiB sparse file with
  /// little data costs what its data costs.
  bool read_chunks(int fd, FileJob& job, chunk::Chunker& chunker, std::vector<uint8_t>& buf, Batch& batch,
                   PendingPut& pending, std::vector<tree::ChunkRef>& chunks, uint64_t& total, bool again) {
    total = 0;
    size_t have = 0;
    bool eof = false;
    const size_t max = chunker.params().max_size;
    Holes holes(fd, job.sparse);
    if (again && ::lseek(fd, 0, SEEK_SET) != 0) {  // (a new fd is at 0 already)
      note_unreadable(job.path, std::string("seek: ") + std::strerror(errno) + " (left out)");
      job.target->name.clear();
      return false;
    }
    uint64_t offset = 0;  // the file offset of buf[0]
    while (!eof || have > 0) {
      if (m_failed) return false;  // the scan ends with the first error: no use reading on
      while (!eof && have < max) {
        size_t n = 0;
        try {
          n = util::read_full(fd, std::span(buf).subspan(have, k_read_size), job.path);
        } catch (const Error& e) {
          note_unreadable(job.path, std::string(e.what()) + " (left out)");
          job.target->name.clear();
          return false;
        }
        if (n < k_read_size) eof = true;
        have += n;
      }
      size_t pos = 0;
      while (have - pos >= max || (eof && pos < have)) {
        // A whole max_size of hole ahead: the zero run's chunks, up to where that ends.
        uint64_t at = offset + pos;
        if (uint64_t end = holes.end_if_inside(at, max, offset + have)) {
          const ZeroChunk& zero = zero_chunk(chunker);
          uint64_t skipped = 0;
          for (; at + skipped + max <= end; skipped += zero.bytes.size()) {
            if (too_many_chunks(job, chunks)) return false;
            chunks.push_back({zero.id, zero.bytes.size()});
            if (first_sighting(zero.id)) {
              batch.add(zero.id, zero.bytes);
              if (batch.bytes.size() >= k_batch_bytes) upload(batch, nullptr, &pending);
            }
          }
          total += skipped;
          offset = at + skipped;  // read on from there
          have = pos = 0;
          eof = false;
          if (::lseek(fd, static_cast<off_t>(offset), SEEK_SET) != static_cast<off_t>(offset)) {
            note_unreadable(job.path, std::string("seek: ") + std::strerror(errno) + " (left out)");
            job.target->name.clear();
            return false;
          }
          break;
        }
        size_t len = chunker.cut(std::span(buf).subspan(pos, have - pos));
        std::span<const uint8_t> piece(buf.data() + pos, len);
        if (too_many_chunks(job, chunks)) return false;
        Digest id = util::sha256(piece);
        chunks.push_back({id, len});
        if (first_sighting(id)) {
          batch.add(id, piece);
          if (batch.bytes.size() >= k_batch_bytes) upload(batch, nullptr, &pending);
        }
        pos += len;
        total += len;
      }
      std::memmove(buf.data(), buf.data() + pos, have - pos);
      have -= pos;
      offset += pos;
    }
    return true;
  }

  /// A file's chunk list is held whole in its tree entry, which one object (at most
  /// store::k_max_chunk) must hold: past tree::k_max_file_chunks the file is left out,
  /// named, and reading it stops (it failed the whole snapshot's upload before).
  bool too_many_chunks(FileJob& job, const std::vector<tree::ChunkRef>& chunks) {
    if (chunks.size() < tree::k_max_file_chunks) return false;
    note_unreadable(job.path, "too large for one tree entry: over " + std::to_string(tree::k_max_file_chunks) +
                                  " chunks (left out)");
    job.target->name.clear();
    return true;
  }

  /// The chunk a run of zeros at least max_size long starts with (the chunker cuts a
  /// run of zeros where it would in any such run: its window never holds anything else).
  struct ZeroChunk {
    std::vector<uint8_t> bytes;
    Digest id;
  };
  const ZeroChunk& zero_chunk(const chunk::Chunker& chunker) {
    std::call_once(m_zero_once, [&] {
      std::vector<uint8_t> zeros(chunker.params().max_size, 0);
      m_zero.bytes.assign(chunker.cut(zeros), 0);
      m_zero.id = util::sha256(m_zero.bytes);
    });
    return m_zero;
  }
  std::once_flag m_zero_once;
  ZeroChunk m_zero;

  void process(FileJob& job, chunk::Chunker& chunker, std::vector<uint8_t>& buf, Batch& batch, PendingPut& pending) {
    util::Fd fd(open_beneath(m_rootfd, job.relpath));
    tree::Entry& entry = *job.target;
    if (!fd) {
      note_unreadable(job.path, std::string("open: ") + std::strerror(errno) + " (left out)");
      entry.name.clear();  // dropped when the tree is built
      return;
    }
    // A larger readahead window for what is read in several steps; a small file is read
    // whole by the default one (a syscall a file saved).
    if (job.stamp.size > k_read_size) ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
    note_cache_probe(fd.get());
    std::vector<tree::ChunkRef> chunks;
    uint64_t total = 0;
    // A file that changes while it is read (its size or mtime moved) is read again, up
    // to k_reads times in all: what was read may mix two versions of it (a truncate
    // midway kept the old head under the old mtime). One that never reads still is
    // stored as last read and counted in `unreadable` (the snapshot is incomplete, as
    // tar and borg exit 1 on it); the next sync reads it again either way.
    constexpr int k_reads = 3;
    for (int read = 1;; ++read) {
      chunks.clear();
      if (!read_chunks(fd.get(), job, chunker, buf, batch, pending, chunks, total, read > 1)) return;
      struct stat after;
      if (::fstat(fd.get(), &after) != 0 ||
          (static_cast<uint64_t>(after.st_size) == total && ns(after.st_mtim) == job.stamp.mtime_ns))
        break;
      {
        std::lock_guard lock(m_warn_mutex);
        m_uncacheable.push_back(job.path);
      }
      if (read == k_reads) {
        note_unreadable(job.path, "changed while it was read, " + std::to_string(k_reads) +
                                      " times: stored as last read, which may mix two versions of it");
        break;
      }
      warn("read " + job.path + ": changed while it was read; read again");
      job.stamp.mtime_ns = entry.mtime_ns = ns(after.st_mtim);
      job.stamp.size = static_cast<uint64_t>(after.st_size);
    }
    entry.size = total;
    entry.chunks = std::move(chunks);
    m_files_read++;
    m_bytes_read += total;
  }

  const ScanOptions& m_opts;
  ChunkSink& m_sink;
  int m_rootfd;
  std::mutex m_mutex;
  std::condition_variable m_cv, m_done_cv;
  std::deque<FileJob> m_jobs;
  // The prefetch (guarded by m_mutex): the queue places given and taken by workers, the
  // next place to ask the kernel for, and the files (and bytes) asked for that no worker
  // took yet.
  static constexpr uint64_t k_prefetch_bytes = 64ull << 20, k_prefetch_file = 8ull << 20;
  uint64_t m_submitted = 0, m_taken = 0, m_ahead = 0, m_prefetch_next = 0;
  std::deque<std::pair<uint64_t, uint64_t>> m_window;  ///< prefetched, not taken yet: (seq, bytes asked)
  std::condition_variable m_prefetch_cv;
  static constexpr int k_prefetch_credit = 512;
  std::atomic<int> m_prefetch_credit{k_prefetch_credit};
  bool m_closed = false;
  int m_active = 0;
  std::exception_ptr m_error;  ///< guarded by m_mutex; read after the workers are joined
  std::atomic<bool> m_failed{false};
  const std::function<void()> m_on_put_error = [this] { record_error(); };
  std::vector<std::thread> m_threads;
  std::mutex m_seen_mutex;
  std::unordered_set<Digest, util::DigestHash> m_seen;
};

using tree::child_path;

/// Why `entry` (as read) cannot go into a snapshot, if it cannot.
std::optional<std::string> why_left_out(const tree::Entry& entry) {
  if (auto problem = tree::entry_problem(entry)) return "cannot be stored: " + *problem + " (left out)";
  // A streaming restore's placeholder not filled yet (its restore killed, or running
  // without fanotify): its bytes are a hole, and backing them up would store zeros as
  // the file, and the mark with it.
  auto marked = [](const tree::Xattr& x) { return x.name == tree::k_placeholder_xattr; };
  if (entry.kind == tree::Kind::file && std::any_of(entry.xattrs.begin(), entry.xattrs.end(), marked))
    return "a placeholder of a streaming restore, not filled yet: its bytes are not there (left out; run the "
           "restore again to finish it)";
  return std::nullopt;
}

}  // namespace

int open_beneath(int rootfd, const std::string& relpath) {
  if (relpath.size() >= PATH_MAX) {
    int fd = open_deep(rootfd, relpath);
    if (fd >= 0) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    return fd;
  }
  open_how how{};
  how.flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  int fd = static_cast<int>(::syscall(SYS_openat2, rootfd, relpath.c_str(), &how, sizeof how));
  if (fd < 0 && errno == ENOSYS) fd = ::openat(rootfd, relpath.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  // Blocking again for the reads: O_NONBLOCK is the only status flag set above, so one
  // call clears it (not a read of the flags first: a syscall a file fewer).
  if (fd >= 0) ::fcntl(fd, F_SETFL, 0);
  return fd;
}

tree::Entry entry_from_stat(int dirfd, const std::string& name, const struct stat& st, bool list_xattrs) {
  tree::Entry e;
  e.name = name;
  e.mode = st.st_mode & 07777;
  e.uid = st.st_uid;
  e.gid = st.st_gid;
  e.mtime_ns = ns(st.st_mtim);
  switch (st.st_mode & S_IFMT) {
    case S_IFREG:
      e.kind = tree::Kind::file;
      e.size = static_cast<uint64_t>(st.st_size);
      e.sparse = st.st_size > 0 && static_cast<uint64_t>(st.st_blocks) * 512 < static_cast<uint64_t>(st.st_size);
      break;
    case S_IFDIR: e.kind = tree::Kind::dir; break;
    case S_IFLNK: {
      e.kind = tree::Kind::symlink;
      std::string target(static_cast<size_t>(st.st_size > 0 ? st.st_size : 256) + 1, '\0');
      for (;;) {
        ssize_t n = ::readlinkat(dirfd, name.c_str(), target.data(), target.size());
        if (n < 0) throw_errno("read symlink " + name);
        if (static_cast<size_t>(n) < target.size()) {
          target.resize(static_cast<size_t>(n));
          break;
        }
        target.resize(target.size() * 2);
      }
      e.target = target;
      break;
    }
    case S_IFCHR: e.kind = tree::Kind::chardev; e.rdev = st.st_rdev; break;
    case S_IFBLK: e.kind = tree::Kind::blockdev; e.rdev = st.st_rdev; break;
    case S_IFIFO: e.kind = tree::Kind::fifo; break;
    case S_IFSOCK: e.kind = tree::Kind::socket; break;
    default: throw Error(ErrorKind::failed, "unknown file type of " + name);
  }
  if (!list_xattrs) return e;
  auto xattrs = util::list_xattrs(dirfd, name, st.st_mode);
  for (auto& [k, v] : xattrs) e.xattrs.push_back({std::move(k), std::move(v)});
  return e;
}

namespace {

/// One scan: pass 1 walks the tree and hands files to the pipeline, pass 2 builds the
/// trees bottom-up once every file is read.
///
/// The walk runs on several threads (the caller's and up to three more: on an unchanged
/// tree it is nothing but system calls, one lstat a name, and each directory is a job of
/// its own). A directory's node is made before any of its subdirectories' (by the walker
/// that lists it), so nodes in reverse order of creation put children before parents
/// whatever order the walkers took them in; what could depend on that order (the name
/// that heads a hardlink group) is settled after the walk.
class Scan {
 public:
  Scan(const ScanOptions& opts, ChunkSink& sink)
      : m_opts(opts),
        m_stats(m_result.stats),
        m_rootfd(util::open_dir(opts.root.string())),
        m_pipeline(opts, sink, m_rootfd.get()) {
    if (::fstat(m_rootfd.get(), &m_root_st) != 0) throw_errno("stat " + opts.root.string());
    m_nodes.reserve(1024);
    add_node("/", SIZE_MAX, 0);
  }

  ScanResult run() {
    walk();
    share_hardlinks();
    build_trees();
    m_result.root = entry_from_stat(m_rootfd.get(), ".", m_root_st);
    m_result.root.name.clear();
    m_result.root.subtree = m_result.tree;
    collect_stats();
    return std::move(m_result);
  }

 private:
  struct Link {
    size_t node, entry;
    std::string path;
  };
  struct Frame {
    size_t node;
    DirNode* dir;  ///< the node itself: a walker never indexes m_nodes, which others grow
    util::Fd fd;
    bool unprotected;
  };
  using Subdirs = std::vector<std::pair<size_t, std::string>>;  // (entry index, name)
  /// What one walker counted (added to the stats when it is done).
  struct Counts {
    uint64_t files = 0, dirs = 0, symlinks = 0, others = 0, hardlinks = 0, skipped = 0;
  };

  /// Appends a node (any walker); returns its index and address, which stays put.
  std::pair<size_t, DirNode*> add_node(std::string path, size_t parent, size_t parent_entry) {
    auto node = std::make_unique<DirNode>(DirNode{std::move(path), parent, parent_entry, {}, {}});
    DirNode* at = node.get();
    std::lock_guard lock(m_nodes_mutex);
    m_nodes.push_back(std::move(node));
    return {m_nodes.size() - 1, at};
  }

  void tick(bool walking) {
    if (!m_opts.progress) return;
    auto now = std::chrono::steady_clock::now();
    if (walking && now - m_last_tick < std::chrono::milliseconds(250)) return;
    m_last_tick = now;
    m_opts.progress({m_files_walked.load(std::memory_order_relaxed), m_pipeline.m_bytes_read.load(),
                     m_pipeline.m_bytes_sent.load(), m_pipeline.m_bytes_to_read.load(), walking});
  }

  /// Pass 1: the walkers list and stat every directory and queue the files that the
  /// cache does not vouch for; the first error of any walker ends the walk and is thrown.
  void walk() {
    m_stack.push_back({0, m_nodes[0].get(), util::Fd(::dup(m_rootfd.get())), false});
    if (m_opts.threads) m_pipeline.start();
    unsigned helpers = std::clamp(m_opts.threads, 1u, 4u) - 1;
    {
      std::vector<std::jthread> threads;  // joined however this block is left
      for (unsigned i = 0; i < helpers; ++i) threads.emplace_back([this] { walker(false); });
      walker(true);  // this thread: also the one that reports progress
    }
    if (m_walk_error) {
      m_stack.clear();
      std::rethrow_exception(m_walk_error);
    }
    if (!m_opts.threads) m_pipeline.start();
    m_pipeline.finish([&] { tick(false); });
  }

  /// Takes directories off the shared stack until none is left and no walker is still
  /// listing one (which may add more).
  void walker(bool reports) {
    Counts counts;
    std::vector<FileJob> pending;
    for (;;) {
      Frame frame;
      {
        std::unique_lock lock(m_walk_mutex);
        for (;;) {
          if (m_walk_error || m_pipeline.failed()) break;  // a failed upload ends the walk: finish() throws it
          if (!m_stack.empty() || m_walking == 0) break;
          m_walk_cv.wait_for(lock, std::chrono::milliseconds(250));
          if (reports) {
            lock.unlock();
            tick(true);
            lock.lock();
          }
        }
        if (m_walk_error || m_pipeline.failed() || m_stack.empty()) {
          m_walk_cv.notify_all();
          break;
        }
        frame = std::move(m_stack.back());
        m_stack.pop_back();
        m_walking++;
      }
      Subdirs subdirs;
      std::vector<Frame> opened;
      try {
        visit(frame, counts, pending, subdirs);
        open_subdirectories(frame, subdirs, opened);
      } catch (...) {
        std::lock_guard lock(m_walk_mutex);
        if (!m_walk_error) m_walk_error = std::current_exception();
      }
      {
        std::lock_guard lock(m_walk_mutex);
        for (auto it = opened.rbegin(); it != opened.rend(); ++it) m_stack.push_back(std::move(*it));
        m_walking--;
      }
      m_walk_cv.notify_all();
      if (reports) tick(true);
    }
    std::lock_guard lock(m_walk_mutex);
    m_stats.files += counts.files;
    m_stats.dirs += counts.dirs;
    m_stats.symlinks += counts.symlinks;
    m_stats.others += counts.others;
    m_stats.hardlinks += counts.hardlinks;
    m_stats.skipped += counts.skipped;
  }

  /// One directory: its entries into its node, its files to the pipeline, its
  /// subdirectories (to be opened) into `subdirs`.
  void visit(const Frame& frame, Counts& counts, std::vector<FileJob>& pending, Subdirs& subdirs) {
    std::vector<std::string> names = list_directory(frame);
    std::vector<CachedFile>* cached_dir = m_opts.cache ? m_opts.cache->directory(frame.dir->path) : nullptr;
    frame.dir->entries.reserve(names.size());
    frame.dir->stamps.reserve(names.size());
    uint64_t files_before = counts.files;
    for (auto& name : names) add_entry(frame, name, cached_dir, subdirs, counts, pending);
    m_files_walked.fetch_add(counts.files - files_before, std::memory_order_relaxed);
    // Files go to the workers once their entry has its final place in the vector.
    for (auto& job : pending) job.target = &frame.dir->entries[job.entry];
    m_pipeline.submit(pending);
  }

  /// The directory's names, sorted ("." and ".." left out); none if it cannot be read.
  std::vector<std::string> list_directory(const Frame& frame) {
    std::vector<std::string> names;
    try {
      names = util::dir_names(frame.fd.get(), frame.dir->path);
    } catch (const Error& e) {
      m_pipeline.note_unreadable(frame.dir->path, std::string(e.what()) + " (kept empty)");
      return {};
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  /// Adds one name of the directory to its node: a subdirectory to `subdirs`, a file
  /// the cache does not vouch for to the pending jobs, a second name of a file to its
  /// hardlink group.
  void add_entry(const Frame& frame, const std::string& name, std::vector<CachedFile>* cached_dir,
                 Subdirs& subdirs, Counts& counts, std::vector<FileJob>& pending) {
    DirNode& dir = *frame.dir;
    std::string path = child_path(dir.path, name);
    auto decision = m_opts.policy.classify(path, frame.unprotected, policy::Ancestors::checked);
    struct stat st;
    if (::fstatat(frame.fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) return;  // vanished since readdir
      m_pipeline.note_unreadable(path, std::string("stat: ") + std::strerror(errno) + " (left out)");
      return;
    }
    bool is_dir = S_ISDIR(st.st_mode);
    if (decision == policy::Decision::skip || (decision == policy::Decision::exceptions && !is_dir)) {
      counts.skipped++;
      if (!is_dir) return;  // an unprotected directory stays, empty
    }
    // A file the cache vouches for at this stamp is not read again, nor are its xattrs
    // listed when it had none.
    FileStamp stamp{S_ISREG(st.st_mode) ? static_cast<uint64_t>(st.st_size) : 0, ns(st.st_mtim), ns(st.st_ctim),
                    static_cast<uint64_t>(st.st_ino)};
    CachedFile* cached = S_ISREG(st.st_mode) ? FilesCache::lookup(cached_dir, name, stamp) : nullptr;
    tree::Entry entry;
    try {
      entry = entry_from_stat(frame.fd.get(), name, st, !cached || !cached->no_xattrs);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::not_found) m_pipeline.note_unreadable(path, std::string(e.what()) + " (left out)");
      return;  // not_found: vanished since readdir
    }
    if (auto why = why_left_out(entry)) {
      m_pipeline.note_unreadable(path, *why);
      return;
    }
    size_t idx = dir.entries.size();
    if (is_dir) {
      counts.dirs++;
      if (decision != policy::Decision::skip)
        subdirs.push_back({idx, name});
      else
        add_node(path, frame.node, idx);  // kept as an empty directory
    } else if (entry.kind == tree::Kind::symlink) {
      counts.symlinks++;
    } else if (entry.kind != tree::Kind::file) {
      counts.others++;
    }
    if (!is_dir && st.st_nlink > 1 && !join_link_group(frame.node, idx, path, st)) {
      counts.hardlinks++;  // a later name: shares the content of the name read after the walk
      if (entry.kind == tree::Kind::file) counts.files++;
    } else if (entry.kind == tree::Kind::file) {
      counts.files++;
      if (cached)
        entry.chunks = std::move(cached->chunks);  // the cache is spent (ScanOptions::cache)
      else if (entry.size > 0)
        pending.push_back(FileJob{idx, nullptr, path.substr(1), path, stamp, 0,
                                  static_cast<uint64_t>(st.st_blocks) * 512 < static_cast<uint64_t>(st.st_size)});
    }
    dir.stamps.push_back(stamp);
    dir.entries.push_back(std::move(entry));
  }

  /// Records a name of an inode with several; true for the first name a walker gets to
  /// (the one read; the others share its content after the walk).
  bool join_link_group(size_t node, size_t idx, const std::string& path, const struct stat& st) {
    std::lock_guard lock(m_links_mutex);
    auto& group = m_link_groups[std::make_pair(st.st_dev, st.st_ino)];
    group.push_back(Link{node, idx, path});
    return group.size() == 1;
  }

  /// Opens the subdirectories and makes their nodes, in name order (pushed in reverse,
  /// so a walker takes the first one next).
  void open_subdirectories(const Frame& frame, const Subdirs& subdirs, std::vector<Frame>& opened) {
    for (const auto& [idx, name] : subdirs) {
      std::string path = child_path(frame.dir->path, name);
      util::Fd fd;
      try {
        fd = util::open_dir_at(frame.fd.get(), name, path);
      } catch (const Error& e) {
        if (e.kind() == ErrorKind::not_found) {  // vanished since it was listed
          frame.dir->entries[idx].name.clear();
          continue;
        }
        if (e.kind() == ErrorKind::permission) {
          m_pipeline.note_unreadable(path, std::string(e.what()) + " (kept empty)");
          add_node(path, frame.node, idx);
          continue;
        }
        throw;
      }
      bool unprotected =
          m_opts.policy.classify(path, frame.unprotected, policy::Ancestors::checked) == policy::Decision::exceptions;
      auto [node, dir] = add_node(path, frame.node, idx);
      opened.push_back({node, dir, std::move(fd), unprotected || frame.unprotected});
    }
  }

  /// A hardlink group's names all name the one that comes first in a walk of one thread
  /// (a directory's own names before its subdirectories', directories in name order), so
  /// trees do not depend on which walker got where first; every name shares the content
  /// of the name that was read.
  void share_hardlinks() {
    auto before = [](const Link& a, const Link& b) {
      std::string_view da(a.path), db(b.path);
      da = da.substr(0, da.rfind('/') + 1);
      db = db.substr(0, db.rfind('/') + 1);
      if (da == db) return a.path < b.path;
      // Directories in pre-order: component by component, a parent before its children.
      size_t i = 0;
      for (;;) {
        size_t ea = da.find('/', i + 1), eb = db.find('/', i + 1);
        if (ea == std::string_view::npos) return true;  // a's directory contains b's
        if (eb == std::string_view::npos) return false;
        auto ca = da.substr(i + 1, ea - i - 1), cb = db.substr(i + 1, eb - i - 1);
        if (ca != cb) return ca < cb;
        i = ea;
      }
    };
    for (auto& [key, names] : m_link_groups) {
      const Link& read = names.front();
      const Link& head = *std::min_element(names.begin(), names.end(), before);
      auto& r = m_nodes[read.node]->entries[read.entry];
      for (const auto& name : names) {
        auto& m = m_nodes[name.node]->entries[name.entry];
        m.link_group = head.path;
        if (&name == &read) continue;
        if (r.kind == tree::Kind::file && !r.name.empty()) {
          m.kind = r.kind;
          m.size = r.size;
          m.chunks = r.chunks;
          m.sparse = r.sparse;
        } else if (r.kind == tree::Kind::file && m.kind == tree::Kind::file && !m.name.empty()) {
          // The name read could not be: neither can this name of the same file.
          m.name.clear();
          m_pipeline.note_unreadable(name.path, "hardlink of " + read.path + ", which could not be read (left out)");
        }
      }
    }
  }

  /// Pass 2: trees bottom-up (nodes in reverse order of creation: children before
  /// parents), each sent unless the cache or this run already has it.
  void build_trees() {
    std::unordered_set<std::string> uncacheable(m_pipeline.m_uncacheable.begin(), m_pipeline.m_uncacheable.end());
    Batch batch;
    PendingPut pending;  // a full batch goes while the next directories are encoded
    for (size_t i = m_nodes.size(); i-- > 0;) {
      auto& node = *m_nodes[i];
      // The entries left out (unreadable) go; the rest, with their stamps, stay in order.
      size_t kept = 0;
      for (size_t k = 0; k < node.entries.size(); ++k) {
        if (node.entries[k].name.empty()) continue;
        if (kept != k) {
          node.entries[kept] = std::move(node.entries[k]);
          node.stamps[kept] = node.stamps[k];
        }
        kept++;
      }
      node.entries.resize(kept);
      tree::Tree t{std::move(node.entries)};
      // A large directory is several objects (its pieces, then their index), each sent
      // and cached on its own: an edit there sends one piece and the index. The entries
      // are in name order already (as listed), so sorting them keeps them where they are,
      // beside their stamps.
      auto objects = tree::encode_dir_in_place(t);
      // The next files cache takes the names and chunk lists the tree is done with.
      std::vector<CachedFile> cached_files;  // in name order, as the entries
      for (size_t k = 0; k < t.entries.size(); ++k) {
        auto& e = t.entries[k];
        if (e.kind != tree::Kind::file) continue;
        m_stats.bytes += e.size;
        if (!e.chunks.empty() && (uncacheable.empty() || !uncacheable.count(child_path(node.path, e.name))))
          cached_files.push_back({std::move(e.name), node.stamps[k], std::move(e.chunks), e.xattrs.empty()});
      }
      m_result.next_cache.add_directory(node.path, std::move(cached_files));
      Digest id = objects.top.id;
      objects.pieces.push_back(std::move(objects.top));
      for (auto& [object_id, encoded] : objects.pieces) {
        bool known = m_opts.cache && m_opts.cache->has_tree(object_id);  // built by an earlier sync
        if (m_opts.on_tree && !known) m_opts.on_tree(object_id, encoded);
        m_result.next_cache.add_tree(object_id);
        if (!known && m_pipeline.first_sighting(object_id)) {
          batch.add(object_id, encoded);
          if (batch.bytes.size() >= k_batch_bytes) m_pipeline.upload(batch, &m_trees_new, &pending);
        }
      }
      if (node.parent == SIZE_MAX)
        m_result.tree = id;
      else
        m_nodes[node.parent]->entries[node.parent_entry].subtree = id;
      node.stamps = {};
    }
    m_pipeline.upload(batch, &m_trees_new, &pending);
    pending.wait();
  }

  void collect_stats() {
    m_stats.files_read = m_pipeline.m_files_read;
    m_stats.bytes_read = m_pipeline.m_bytes_read;
    m_stats.chunks_new = m_pipeline.m_chunks_new;
    m_stats.bytes_new = m_pipeline.m_bytes_new;
    m_stats.bytes_sent = m_pipeline.m_bytes_sent;
    m_stats.trees_new = m_trees_new;
    m_stats.warnings = m_pipeline.m_warnings;
    m_stats.unreadable = m_pipeline.m_unreadable;
    m_stats.unreadable_entries = m_pipeline.m_unreadable_entries;
    // Workers note files as they finish: sorted, the names (and "first") do not depend on timing.
    std::sort(m_stats.unreadable_entries.begin(), m_stats.unreadable_entries.end(),
              [](const Unreadable& a, const Unreadable& b) { return a.path < b.path; });
  }

  const ScanOptions& m_opts;
  ScanResult m_result;
  ScanStats& m_stats;
  util::Fd m_rootfd;
  struct stat m_root_st {};
  std::mutex m_nodes_mutex;  ///< guards m_nodes' growth during the walk
  std::vector<std::unique_ptr<DirNode>> m_nodes;
  Pipeline m_pipeline;  // after the nodes: its workers (joined first) write into their entries
  // The walk's shared state: directories opened and not yet listed, how many walkers
  // are listing one, and the first error.
  std::mutex m_walk_mutex;
  std::condition_variable m_walk_cv;
  std::vector<Frame> m_stack;
  unsigned m_walking = 0;
  std::exception_ptr m_walk_error;
  std::atomic<uint64_t> m_files_walked{0};
  std::mutex m_links_mutex;
  std::map<std::pair<dev_t, ino_t>, std::vector<Link>> m_link_groups;  ///< each group's names, the one read first
  std::atomic<uint64_t> m_trees_new{0};
  std::chrono::steady_clock::time_point m_last_tick = std::chrono::steady_clock::now();
};

}  // namespace

ScanResult scan(const ScanOptions& opts, ChunkSink& sink) { return Scan(opts, sink).run(); }

}  // namespace mirage::scan
