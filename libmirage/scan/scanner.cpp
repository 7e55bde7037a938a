#include "libmirage/scan/scanner.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <climits>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
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

/// One directory of the walk; nodes are in pre-order, so children follow parents.
struct DirNode {
  std::string path;  // root-relative, "/" for the root
  size_t parent = SIZE_MAX;
  size_t parent_entry = 0;
  std::vector<tree::Entry> entries;
  std::vector<FileStamp> stamps;  // parallel to entries; meaningful for files
};

struct FileJob {
  size_t node;
  size_t entry;
  // The entry itself. The walk keeps appending directory nodes while workers run, so a
  // worker must never index the node vector; an entries vector is complete before its
  // jobs are submitted, and moving a node (when the node vector grows) keeps its
  // entries' addresses.
  tree::Entry* target = nullptr;
  std::string relpath;  // relative to the root fd, no leading slash
  std::string path;     // root-relative with a leading slash (cache key, messages)
  FileStamp stamp;
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

class Pipeline {
 public:
  Pipeline(const ScanOptions& opts, ChunkSink& sink, int rootfd) : m_opts(opts), m_sink(sink), m_rootfd(rootfd) {}

  void start() {
    unsigned n = std::max(1u, m_opts.threads);
    for (unsigned i = 0; i < n; ++i) m_threads.emplace_back([this] { worker(); });
  }

  void submit(FileJob job) {
    std::lock_guard lock(m_mutex);
    m_bytes_to_read += job.stamp.size;
    m_jobs.push_back(std::move(job));
    m_cv.notify_one();
  }

  /// Waits for every job; rethrows the first worker error.
  void finish(const std::function<void()>& tick) {
    {
      std::unique_lock lock(m_mutex);
      m_closed = true;
      m_cv.notify_all();
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
    }
    for (auto& t : m_threads) t.join();
  }

  /// Sends a batch of objects the server may lack (used for trees too), then empties it.
  void upload(Batch& batch, std::atomic<uint64_t>* counter) {
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
      m_sink.put(std::move(records));
    }
    batch.clear();
  }

  /// True the first time this run sees `id` (so a chunk shared by two files is sent once).
  bool first_sighting(const Digest& id) {
    std::lock_guard lock(m_seen_mutex);
    return m_seen.insert(id).second;
  }

  std::atomic<uint64_t> m_files_read{0}, m_bytes_read{0}, m_chunks_new{0}, m_bytes_new{0}, m_bytes_sent{0};
  uint64_t m_bytes_to_read = 0;
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
    for (;;) {
      FileJob job;
      {
        std::unique_lock lock(m_mutex);
        m_cv.wait(lock, [&] { return m_closed || !m_jobs.empty(); });
        if (m_jobs.empty()) {
          // Closed: flush what this worker holds before leaving.
          lock.unlock();
          try {
            upload(batch, nullptr);
          } catch (...) {
            record_error();
          }
          return;
        }
        job = std::move(m_jobs.front());
        m_jobs.pop_front();
        m_active++;
      }
      try {
        if (!m_failed) process(job, chunker, buf, batch);
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

  void record_error() {
    std::lock_guard lock(m_mutex);
    if (!m_error) m_error = std::current_exception();
    m_failed = true;
    m_jobs.clear();
    m_done_cv.notify_all();
  }

  void warn(std::string message) {
    std::lock_guard lock(m_warn_mutex);
    m_warnings.push_back(std::move(message));
  }

  void process(FileJob& job, chunk::Chunker& chunker, std::vector<uint8_t>& buf, Batch& batch) {
    util::Fd fd(open_beneath(m_rootfd, job.relpath));
    tree::Entry& entry = *job.target;
    if (!fd) {
      note_unreadable(job.path, std::string("open: ") + std::strerror(errno) + " (left out)");
      entry.name.clear();  // dropped when the tree is built
      return;
    }
    ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
    std::vector<tree::ChunkRef> chunks;
    uint64_t total = 0;
    size_t have = 0;
    bool eof = false;
    const size_t max = chunker.params().max_size;
    while (!eof || have > 0) {
      while (!eof && have < max) {
        size_t n = 0;
        try {
          n = util::read_full(fd.get(), std::span(buf).subspan(have, k_read_size), job.path);
        } catch (const Error& e) {
          note_unreadable(job.path, std::string(e.what()) + " (left out)");
          entry.name.clear();
          return;
        }
        if (n < k_read_size) eof = true;
        have += n;
      }
      size_t pos = 0;
      while (have - pos >= max || (eof && pos < have)) {
        size_t len = chunker.cut(std::span(buf).subspan(pos, have - pos));
        std::span<const uint8_t> piece(buf.data() + pos, len);
        Digest id = util::sha256(piece);
        chunks.push_back({id, len});
        if (first_sighting(id)) {
          batch.add(id, piece);
          if (batch.bytes.size() >= k_batch_bytes) upload(batch, nullptr);
        }
        pos += len;
        total += len;
      }
      std::memmove(buf.data(), buf.data() + pos, have - pos);
      have -= pos;
    }
    struct stat after;
    if (::fstat(fd.get(), &after) == 0 &&
        (static_cast<uint64_t>(after.st_size) != total || ns(after.st_mtim) != job.stamp.mtime_ns)) {
      warn("read " + job.path + ": changed while it was read");
      std::lock_guard lock(m_warn_mutex);
      m_uncacheable.push_back(job.path);
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
  bool m_closed = false;
  int m_active = 0;
  std::exception_ptr m_error;  ///< guarded by m_mutex; read after the workers are joined
  std::atomic<bool> m_failed{false};
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
  if (fd >= 0) {
    int flags = ::fcntl(fd, F_GETFL);
    ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  }
  return fd;
}

tree::Entry entry_from_stat(int dirfd, const std::string& name, const struct stat& st) {
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
  auto xattrs = util::list_xattrs(dirfd, name, st.st_mode);
  for (auto& [k, v] : xattrs) e.xattrs.push_back({std::move(k), std::move(v)});
  return e;
}

ScanResult scan(const ScanOptions& opts, ChunkSink& sink) {
  ScanResult result;
  ScanStats& stats = result.stats;
  util::Fd rootfd = util::open_dir(opts.root.string());
  struct stat root_st;
  if (::fstat(rootfd.get(), &root_st) != 0) throw_errno("stat " + opts.root.string());

  std::vector<DirNode> nodes;
  Pipeline pipeline(opts, sink, rootfd.get());
  nodes.reserve(1024);
  nodes.push_back({"/", SIZE_MAX, 0, {}, {}});
  struct Link {
    size_t node, entry;
    std::string path;
  };
  std::map<std::pair<dev_t, ino_t>, Link> link_heads;
  std::vector<std::pair<Link, Link>> link_members;  // (member, head)
  std::vector<FileJob> pending;

  auto last_tick = std::chrono::steady_clock::now();
  auto tick = [&](bool walking) {
    if (!opts.progress) return;
    auto now = std::chrono::steady_clock::now();
    if (walking && now - last_tick < std::chrono::milliseconds(250)) return;
    last_tick = now;
    opts.progress({stats.files, pipeline.m_bytes_read.load(), pipeline.m_bytes_sent.load(), pipeline.m_bytes_to_read,
                   walking});
  };

  // Pass 1: walk (pre-order), queue files that the cache does not vouch for.
  struct Frame {
    size_t node;
    util::Fd fd;
    bool unprotected;
  };
  std::vector<Frame> stack;
  stack.push_back({0, util::Fd(::dup(rootfd.get())), false});
  if (opts.threads) pipeline.start();
  while (!stack.empty()) {
    Frame frame = std::move(stack.back());
    stack.pop_back();
    const std::string dir_path = nodes[frame.node].path;
    std::vector<std::string> names;
    {
      int dupfd = ::dup(frame.fd.get());
      DIR* dir = dupfd >= 0 ? ::fdopendir(dupfd) : nullptr;
      if (!dir) throw_errno("open directory " + dir_path);
      ::rewinddir(dir);
      errno = 0;
      while (dirent* de = ::readdir(dir)) {
        std::string n = de->d_name;
        if (n != "." && n != "..") names.push_back(std::move(n));
      }
      int err = errno;
      ::closedir(dir);
      if (err) {
        pipeline.note_unreadable(dir_path, std::string("read directory: ") + std::strerror(err) + " (kept empty)");
        names.clear();
      }
    }
    std::sort(names.begin(), names.end());
    const std::vector<CachedFile>* cached_dir = opts.cache ? opts.cache->directory(dir_path) : nullptr;
    std::vector<std::pair<size_t, std::string>> subdirs;  // (entry index, name)
    for (auto& name : names) {
      std::string path = child_path(dir_path, name);
      auto decision = opts.policy.classify(path, frame.unprotected, policy::Ancestors::checked);
      struct stat st;
      if (::fstatat(frame.fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) continue;  // vanished since readdir
        pipeline.note_unreadable(path, std::string("stat: ") + std::strerror(errno) + " (left out)");
        continue;
      }
      bool is_dir = S_ISDIR(st.st_mode);
      if (decision == policy::Decision::skip || (decision == policy::Decision::exceptions && !is_dir)) {
        stats.skipped++;
        if (!is_dir) continue;  // an unprotected directory stays, empty
      }
      tree::Entry entry;
      try {
        entry = entry_from_stat(frame.fd.get(), name, st);
      } catch (const Error& e) {
        if (e.kind() != ErrorKind::not_found) pipeline.note_unreadable(path, std::string(e.what()) + " (left out)");
        continue;  // not_found: vanished since readdir
      }
      if (auto why = why_left_out(entry)) {
        pipeline.note_unreadable(path, *why);
        continue;
      }
      // nodes may grow below (an unprotected directory gets its node here), so index afresh.
      size_t idx = nodes[frame.node].entries.size();
      if (is_dir) {
        stats.dirs++;
        if (decision != policy::Decision::skip)
          subdirs.push_back({idx, name});
        else
          nodes.push_back({path, frame.node, idx, {}, {}});  // kept as an empty directory
      } else if (entry.kind == tree::Kind::symlink) {
        stats.symlinks++;
      } else if (entry.kind != tree::Kind::file) {
        stats.others++;
      }
      if (!is_dir && st.st_nlink > 1) {
        auto key = std::make_pair(st.st_dev, st.st_ino);
        auto it = link_heads.find(key);
        if (it == link_heads.end()) {
          link_heads.emplace(key, Link{frame.node, idx, path});
          entry.link_group = path;
        } else {
          entry.link_group = it->second.path;
          link_members.push_back({Link{frame.node, idx, path}, it->second});
          stats.hardlinks++;
          if (entry.kind == tree::Kind::file) stats.files++;
          nodes[frame.node].stamps.push_back(
              {entry.size, entry.mtime_ns, ns(st.st_ctim), static_cast<uint64_t>(st.st_ino)});
          nodes[frame.node].entries.push_back(std::move(entry));
          continue;
        }
      }
      FileStamp stamp{entry.size, entry.mtime_ns, ns(st.st_ctim), static_cast<uint64_t>(st.st_ino)};
      if (entry.kind == tree::Kind::file) {
        stats.files++;
        const std::vector<tree::ChunkRef>* cached = FilesCache::lookup(cached_dir, name, stamp);
        if (cached)
          entry.chunks = *cached;
        else if (entry.size > 0)
          pending.push_back(FileJob{frame.node, idx, nullptr, path.substr(1), path, stamp});
      }
      nodes[frame.node].stamps.push_back(stamp);
      nodes[frame.node].entries.push_back(std::move(entry));
    }
    // Files go to the workers once their entry has its final place in the vector.
    for (auto& job : pending) {
      job.target = &nodes[job.node].entries[job.entry];
      pipeline.submit(std::move(job));
    }
    pending.clear();
    // Push subdirectories in reverse so they are walked in name order.
    for (auto it = subdirs.rbegin(); it != subdirs.rend(); ++it) {
      const auto& [idx, name] = *it;
      std::string path = child_path(dir_path, name);
      util::Fd fd;
      try {
        fd = util::open_dir_at(frame.fd.get(), name, path);
      } catch (const Error& e) {
        if (e.kind() == ErrorKind::not_found) {  // vanished since it was listed
          nodes[frame.node].entries[idx].name.clear();
          continue;
        }
        if (e.kind() == ErrorKind::permission) {
          pipeline.note_unreadable(path, std::string(e.what()) + " (kept empty)");
          nodes.push_back({path, frame.node, idx, {}, {}});
          continue;
        }
        throw;
      }
      bool unprotected =
          opts.policy.classify(path, frame.unprotected, policy::Ancestors::checked) == policy::Decision::exceptions;
      nodes.push_back({path, frame.node, idx, {}, {}});
      stack.push_back({nodes.size() - 1, std::move(fd), unprotected || frame.unprotected});
    }
    tick(true);
  }
  if (!opts.threads) pipeline.start();
  pipeline.finish([&] { tick(false); });

  // Hardlink members share their head's content.
  for (auto& [member, head] : link_members) {
    auto& h = nodes[head.node].entries[head.entry];
    auto& m = nodes[member.node].entries[member.entry];
    if (h.kind == tree::Kind::file && !h.name.empty()) {
      m.kind = h.kind;
      m.size = h.size;
      m.chunks = h.chunks;
      m.sparse = h.sparse;
    } else if (h.kind == tree::Kind::file && m.kind == tree::Kind::file && !m.name.empty()) {
      // The head could not be read: neither can this name of the same file.
      m.name.clear();
      pipeline.note_unreadable(member.path, "hardlink of " + head.path + ", which could not be read (left out)");
    }
  }

  // Pass 2: trees bottom-up (reverse pre-order puts children before parents).
  std::unordered_set<std::string> uncacheable(pipeline.m_uncacheable.begin(), pipeline.m_uncacheable.end());
  Batch batch;
  std::atomic<uint64_t> trees_new{0};
  for (size_t i = nodes.size(); i-- > 0;) {
    auto& node = nodes[i];
    tree::Tree t;
    std::vector<CachedFile> cached_files;  // entries are in name order, so this is too
    for (size_t k = 0; k < node.entries.size(); ++k) {
      auto& e = node.entries[k];
      if (e.name.empty()) continue;  // left out (unreadable)
      if (e.kind == tree::Kind::file) {
        stats.bytes += e.size;
        if (!e.chunks.empty() && (uncacheable.empty() || !uncacheable.count(child_path(node.path, e.name))))
          cached_files.push_back({e.name, node.stamps[k], e.chunks});
      }
      t.entries.push_back(std::move(e));
    }
    result.next_cache.add_directory(node.path, std::move(cached_files));
    // A large directory is several objects (its pieces, then their index), each sent
    // and cached on its own: an edit there sends one piece and the index.
    auto objects = tree::encode_dir(std::move(t));
    Digest id = objects.top.id;
    objects.pieces.push_back(std::move(objects.top));
    for (auto& [object_id, encoded] : objects.pieces) {
      if (opts.on_tree) opts.on_tree(object_id, encoded);
      result.next_cache.add_tree(object_id);
      if (!(opts.cache && opts.cache->has_tree(object_id)) && pipeline.first_sighting(object_id)) {
        batch.add(object_id, encoded);
        if (batch.bytes.size() >= k_batch_bytes) pipeline.upload(batch, &trees_new);
      }
    }
    if (node.parent == SIZE_MAX) {
      result.tree = id;
    } else {
      nodes[node.parent].entries[node.parent_entry].subtree = id;
    }
    node.entries = {};
    node.stamps = {};
  }
  pipeline.upload(batch, &trees_new);

  result.root = entry_from_stat(rootfd.get(), ".", root_st);
  result.root.name.clear();
  result.root.subtree = result.tree;
  stats.files_read = pipeline.m_files_read;
  stats.bytes_read = pipeline.m_bytes_read;
  stats.chunks_new = pipeline.m_chunks_new;
  stats.bytes_new = pipeline.m_bytes_new;
  stats.bytes_sent = pipeline.m_bytes_sent;
  stats.trees_new = trees_new;
  stats.warnings = pipeline.m_warnings;
  stats.unreadable = pipeline.m_unreadable;
  stats.unreadable_entries = pipeline.m_unreadable_entries;
  // Workers note files as they finish: sorted, the names (and "first") do not depend on timing.
  std::sort(stats.unreadable_entries.begin(), stats.unreadable_entries.end(),
            [](const Unreadable& a, const Unreadable& b) { return a.path < b.path; });
  return result;
}

}  // namespace mirage::scan
