#include "libmirage/materialize/stream.hpp"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <iterator>
#include <optional>
#include <unordered_map>
#include <utility>

#include "libmirage/materialize/content.hpp"
#include "libmirage/materialize/metadata.hpp"
#include "libmirage/store/record.hpp"
#include "libmirage/tree/tree.hpp"
#include "libmirage/util/error.hpp"

namespace mirage::materialize {

namespace {
constexpr uint64_t k_batch_bytes = 8u << 20;  ///< chunks asked for at once
constexpr size_t k_batch_files = 512;         ///< small files filled from one fetch
constexpr uint64_t k_first_bytes = 256u << 10;  ///< a read's first fetch (then doubled)
}

void mark_placeholder(int fd, const std::string& path) {
  if (::fsetxattr(fd, k_placeholder_xattr, "1", 1, 0) != 0)
    throw_errno("mark the placeholder of " + path + " (streaming needs user xattrs on the target's file system)");
}

bool is_placeholder(int fd) {
  char value[4];
  return ::fgetxattr(fd, k_placeholder_xattr, value, sizeof value) >= 0;
}

void make_placeholder_fd(int fd, const tree::Entry& e, const std::string& path, const Warn& warn) {
  if (::ftruncate(fd, static_cast<off_t>(e.size)) != 0) throw_errno("size the placeholder of " + path);
  mark_placeholder(fd, path);
  set_metadata_fd(fd, e, path, warn);
}

namespace {
/// Verifies chunk `c` (from `records`) and appends it to `out`.
void write_chunk(ContentWriter& out, const std::unordered_map<Digest, store::Record, util::DigestHash>& records,
                 const tree::ChunkRef& c, const std::string& path, std::vector<uint8_t>& plain) {
  auto it = records.find(c.id);
  if (it == records.end() || it->second.raw_size != c.size)
    throw Error(ErrorKind::integrity, "restore " + path + ": chunk " + c.id.hex() + " is missing from the store");
  plain.resize(c.size);
  store::open_record_into(it->second, plain, "restore " + path);
  out.write(plain);
}
}  // namespace

void to_json(nlohmann::json& j, const StreamProgress& p) {
  j = {{"files_done", p.files_done}, {"files_total", p.files_total}, {"bytes_done", p.bytes_done},
       {"bytes_total", p.bytes_total}, {"on_demand", p.on_demand},   {"wire_bytes", p.wire_bytes}};
}

Streamer::Streamer(Options options) : m_opts(std::move(options)) {
  m_group = util::PreContentGroup::open(&m_why_not);
  if (!m_group) return;
  m_on_demand = true;
  m_stop = util::Fd(::eventfd(0, EFD_CLOEXEC));
  if (!m_stop) throw_errno("eventfd");
  m_listener = std::thread([this] { listen(); });
  m_reader = std::thread([this] { serve_reads(); });
}

Streamer::~Streamer() {
  {
    std::lock_guard lock(m_mutex);
    m_stopping = true;
  }
  m_changed.notify_all();
  if (m_stop) {
    uint64_t one = 1;
    (void)!::write(m_stop.get(), &one, sizeof one);
  }
  if (m_reader.joinable()) m_reader.join();
  if (m_listener.joinable()) m_listener.join();
  // Reads still held get their answer: the file stays a placeholder, and they go on.
  if (m_group)
    for (auto& item : m_items)
      for (auto& ev : item->waiting) m_group->answer(ev, item->state == Item::State::done);
}

void Streamer::add(int dirfd, const std::string& name, const std::string& path, const tree::Entry& entry) {
  struct stat st;
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) throw_errno("stat the placeholder of " + path);
  auto item = std::make_unique<Item>();
  // Its handle: the fill finds it when a user moved it (or a directory above it).
  alignas(file_handle) unsigned char buf[sizeof(file_handle) + MAX_HANDLE_SZ];
  auto* fh = reinterpret_cast<file_handle*>(buf);
  fh->handle_bytes = MAX_HANDLE_SZ;
  int mount_id = 0;
  if (::name_to_handle_at(dirfd, name.c_str(), fh, &mount_id, 0) == 0) {
    item->handle.assign(reinterpret_cast<const char*>(buf), sizeof(file_handle) + fh->handle_bytes);
    item->mount_id = mount_id;
  }
  item->path = path;
  item->entry = entry;
  item->dev = st.st_dev;
  item->ino = st.st_ino;
  item->rank = m_opts.rank ? m_opts.rank(path, entry) : 0;
  std::lock_guard lock(m_mutex);
  if (!item->handle.empty() && !m_mounts.count(mount_id))
    m_mounts.emplace(mount_id, util::Fd(::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)));
  m_by_inode[{st.st_dev, st.st_ino}] = item.get();
  m_progress.files_total++;
  m_progress.bytes_total += entry.size;
  m_items.push_back(std::move(item));
  // A file system that does not take the mark: no file there can wait for its bytes.
  if (m_on_demand && !m_group->mark(dirfd, name, &m_why_not)) m_on_demand = false;
}

bool Streamer::claim(Item& item) {
  std::lock_guard lock(m_mutex);
  if (item.state != Item::State::pending) return false;
  item.state = Item::State::filling;
  return true;
}

/// Answers every read: our own (the filler's writes raise events too) at once, others
/// when their file is filled.
void Streamer::listen() {
  const pid_t self = ::getpid();
  while (auto ev = m_group->next(m_stop.get())) {
    if (ev->pid == self) {
      m_group->answer(*ev, true);
      continue;
    }
    std::unique_lock lock(m_mutex);
    auto it = m_by_inode.find({ev->dev, ev->ino});
    if (it == m_by_inode.end() || it->second->state == Item::State::done ||
        it->second->state == Item::State::failed || covered(*it->second, *ev)) {
      bool allow = it == m_by_inode.end() || it->second->state != Item::State::failed;
      lock.unlock();
      m_group->answer(*ev, allow);
      continue;
    }
    Item* item = it->second;
    if (item->state == Item::State::pending && item->waiting.empty()) m_urgent.push_back(item);
    item->waiting.push_back(std::move(*ev));
    if (!item->read_on_demand) {
      item->read_on_demand = true;
      m_progress.on_demand++;
    }
    lock.unlock();
    m_changed.notify_all();
  }
}

/// The on-demand filler: files a program is waiting on, one at a time.
void Streamer::serve_reads() {
  // The reads' connection, opened now rather than at the first read (for a local store
  // that is a server process to start: hundreds of ms a reader would wait). One that
  // fails now is tried again at the first read, which reports it.
  try {
    auto source = m_opts.source();
    std::lock_guard lock(m_mutex);
    if (!m_reader_source) m_reader_source = std::move(source);
  } catch (const std::exception&) {
  }
  for (;;) {
    Item* item = nullptr;
    {
      std::unique_lock lock(m_mutex);
      m_changed.wait(lock, [&] { return m_stopping || !m_urgent.empty(); });
      if (m_stopping) return;
      item = m_urgent.front();
      m_urgent.pop_front();
    }
    if (!claim(*item)) continue;  // the background fill has it, and answers its readers
    if (!m_reader_source) m_reader_source = m_opts.source();
    fill_item(*item, *m_reader_source, false);
  }
}

StreamProgress Streamer::fill() {
  std::vector<Item*> order;
  {
    std::lock_guard lock(m_mutex);
    for (auto& item : m_items) order.push_back(item.get());
  }
  std::stable_sort(order.begin(), order.end(), [](const Item* a, const Item* b) {
    if (a->rank != b->rank) return a->rank < b->rank;
    return a->entry.mtime_ns > b->entry.mtime_ns;
  });
  std::unique_ptr<ObjectSource> source;
  m_bucket_time = std::chrono::steady_clock::now();
  m_tokens = 0;
  for (size_t i = 0; i < order.size();) {
    // Small files go together (one fetch for many), as a plain restore batches them.
    std::vector<Item*> batch;
    uint64_t bytes = 0;
    for (; i < order.size() && batch.size() < k_batch_files; ++i) {
      if (!batch.empty() && bytes + order[i]->entry.size > batch_bytes()) break;
      if (!claim(*order[i])) continue;
      batch.push_back(order[i]);
      bytes += order[i]->entry.size;
    }
    if (batch.empty()) continue;
    if (!source) source = m_opts.source();
    fill_batch(batch, *source);
  }
  std::unique_lock lock(m_mutex);
  m_changed.wait(lock, [&] {
    return std::all_of(m_items.begin(), m_items.end(), [](const auto& i) {
      return i->state == Item::State::done || i->state == Item::State::failed;
    });
  });
  if (m_error) std::rethrow_exception(m_error);
  m_progress.wire_bytes = (source ? source->bytes_received() : 0) + (m_reader_source ? m_reader_source->bytes_received() : 0);
  return m_progress;
}

StreamProgress Streamer::progress() const {
  std::lock_guard lock(m_mutex);
  return m_progress;
}

std::vector<std::string> Streamer::warnings() const {
  std::lock_guard lock(m_mutex);
  return m_warnings;
}

void Streamer::fill_batch(const std::vector<Item*>& items, ObjectSource& source) {
  if (items.size() == 1) return fill_item(*items.front(), source, true);
  Records fetched;
  std::vector<uint8_t> blob;
  uint64_t bytes = 0;
  try {
    std::vector<Digest> ids;
    for (const Item* item : items)
      for (const auto& c : item->entry.chunks) {
        ids.push_back(c.id);
        bytes += c.size;
      }
    throttle(bytes, nullptr);  // before: the limit holds on the wire, not after a burst
    blob = source.records(ids);
    store::RecordReader reader(blob, "restore");
    while (auto rec = reader.next()) fetched.emplace(rec->id, *rec);
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::unavailable) throw;
    fetched.clear();  // each file asks for its own, and a failure names it
  }
  // Written all, made durable together (one syncfs, not an fsync a file), then unmarked.
  std::vector<std::pair<Item*, util::Fd>> written;
  for (Item* item : items) {
    util::Fd fd = write_item(*item, source, true, fetched.empty() ? nullptr : &fetched);
    if (fd) written.emplace_back(item, std::move(fd));
  }
  if (!written.empty() && ::syncfs(written.front().second.get()) != 0) {
    record_error(std::make_exception_ptr(Error(ErrorKind::failed, "make the filled files durable: " + std::string(std::strerror(errno)))));
    for (auto& [item, fd] : written) finish_item(*item, -1);
    return;
  }
  for (auto& [item, fd] : written) finish_item(*item, fd.get());
}

void Streamer::fill_item(Item& item, ObjectSource& source, bool background, const Records* fetched) {
  util::Fd fd = write_item(item, source, background, fetched);
  if (fd && ::fsync(fd.get()) != 0) {
    record_error(std::make_exception_ptr(Error(ErrorKind::failed, "make " + item.path + " durable: " + std::strerror(errno))));
    return finish_item(item, -1);
  }
  if (fd) finish_item(item, fd.get());
}

void Streamer::record_error(std::exception_ptr error) {
  std::lock_guard lock(m_mutex);
  if (!m_error) m_error = std::move(error);
}

/// Writes `item`'s content and metadata into its placeholder; returns the open file, or
/// no fd when it is finished already (changed at the target: left, with a warning; or
/// failed: kept for fill() to throw, the file still marked) or put back for later (the
/// reads' filler went to another file a read waits for).
/// Only the inode the restore made, still its placeholder: a file put in its place (by
/// whoever may write the directory, marked and of the same size) would get the
/// snapshot's bytes before its owner and mode are the snapshot's, readable through a
/// descriptor held open, or through another link to it.
bool Streamer::ours(int fd, const Item& item) {
  struct stat st;
  return fd >= 0 && ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_dev == item.dev && st.st_ino == item.ino &&
         st.st_nlink > 0 && uint64_t(st.st_size) == item.entry.size && is_placeholder(fd);
}

util::Fd Streamer::open_item(const Item& item, util::Fd& dir, std::string& name) {
  // Down the target without following a symlink: the tree may have changed since.
  try {
    dir = util::open_dir(m_opts.to.string());
    auto parts = tree::split_path(item.path);
    for (size_t i = 0; i + 1 < parts.size(); ++i) dir = util::open_dir_at(dir.get(), parts[i], item.path);
    name = parts.back();
    // O_NONBLOCK: a FIFO put in its place must not hold the fill (no effect on a file).
    util::Fd fd(::openat(dir.get(), name.c_str(), O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (ours(fd.get(), item)) return fd;
  } catch (const Error&) {
    // a directory on the way moved or replaced: the file may still be there, elsewhere
  }
  // Moved (it, or a directory above it, renamed by a user): the same inode, by its handle.
  int mount_fd = -1;
  {
    std::lock_guard lock(m_mutex);
    auto mount = m_mounts.find(item.mount_id);
    if (mount != m_mounts.end()) mount_fd = mount->second.get();
  }
  if (item.handle.empty() || mount_fd < 0) return {};
  // open_by_handle_at takes a non-const, aligned handle.
  std::vector<uint64_t> handle((item.handle.size() + 7) / 8);
  std::memcpy(handle.data(), item.handle.data(), item.handle.size());
  util::Fd fd(::open_by_handle_at(mount_fd, reinterpret_cast<file_handle*>(handle.data()), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
  if (!ours(fd.get(), item)) return {};
  char where[4096];
  ssize_t n = ::readlink(("/proc/self/fd/" + std::to_string(fd.get())).c_str(), where, sizeof where - 1);
  if (n <= 0 || where[0] != '/') return {};
  std::filesystem::path now(std::string(where, size_t(n)));
  try {
    dir = util::open_dir(now.parent_path().string());
  } catch (const Error&) {
    return {};
  }
  name = now.filename().string();
  struct stat st;
  if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || st.st_ino != item.ino || st.st_dev != item.dev)
    return {};
  std::lock_guard lock(m_mutex);
  m_warnings.push_back(item.path + ": moved to " + now.string() + " while it was being restored; filled there");
  return fd;
}

util::Fd Streamer::write_item(Item& item, ObjectSource& source, bool background, const Records* fetched) {
  try {
    util::Fd dir;
    std::string name;
    util::Fd fd = open_item(item, dir, name);
    if (!fd) {
      {
        std::lock_guard lock(m_mutex);
        m_warnings.push_back(item.path + ": changed at the target while it was being restored; left as it is");
      }
      finish_item(item, -2);
      return {};
    }
    if (!write_content(item, fd.get(), source, background, fetched)) {
      {
        std::lock_guard lock(m_mutex);
        item.state = Item::State::pending;
        m_urgent.push_back(&item);
      }
      m_changed.notify_all();
      return {};
    }
    // Writing dropped any file capability and moved the times: the snapshot's again.
    set_metadata_fd(fd.get(), item.entry, item.path, [this](std::string m) {
      std::lock_guard lock(m_mutex);
      m_warnings.push_back(std::move(m));
    });
    // Every byte and the metadata in place: reads go on (from the page cache); the mark
    // goes once the file is durable.
    {
      std::lock_guard lock(m_mutex);
      item.readable = true;
    }
    if (m_group) answer_covered(item);
    return fd;
  } catch (...) {
    record_error(std::current_exception());
    finish_item(item, -1);
    return {};
  }
}

/// Unmarks the filled file `fd` (durable by now) and answers the reads it held; -1: it
/// failed (it stays a placeholder, reads fail with EIO); -2: left as it was.
void Streamer::finish_item(Item& item, int fd) {
  bool ok = fd != -1;
  if (fd >= 0) {
    if (::fremovexattr(fd, k_placeholder_xattr) != 0 && errno != ENODATA) {
      record_error(std::make_exception_ptr(Error(ErrorKind::failed, "unmark the placeholder of " + item.path + ": " + std::strerror(errno))));
      ok = false;
    }
    if (m_group) m_group->unmark(fd);
  }
  std::vector<util::PreContentGroup::Event> waiting;
  {
    std::lock_guard lock(m_mutex);
    item.state = ok ? Item::State::done : Item::State::failed;
    waiting.swap(item.waiting);
    if (ok) {
      m_progress.files_done++;
      m_progress.bytes_done += item.entry.size;
    }
  }
  for (auto& ev : waiting) m_group->answer(ev, ok);  // only a group holds reads
  m_changed.notify_all();
  report();
}

bool Streamer::covered(const Item& item, const Event& ev) {
  if (item.readable) return true;
  // No range (a truncate), or a file whose privileges a write drops: the whole file.
  if (!ev.ranged || ev.count == 0 || (item.entry.mode & 06000) ||
      std::any_of(item.entry.xattrs.begin(), item.entry.xattrs.end(),
                  [](const tree::Xattr& x) { return x.name == "security.capability"; }))
    return false;
  uint64_t end = ev.offset + std::min(ev.count, item.entry.size);
  end = std::min(end, item.entry.size);
  if (ev.offset >= end) return true;  // past the end: nothing to wait for
  if (item.written.empty()) return false;
  size_t i = size_t(std::upper_bound(item.starts.begin(), item.starts.end(), ev.offset) - item.starts.begin());
  for (i = i ? i - 1 : 0; i < item.starts.size() && item.starts[i] < end; ++i)
    if (!item.written[i]) return false;
  return true;
}

std::pair<size_t, size_t> Streamer::next_chunks(Item& item, uint64_t limit, uint64_t cap) {
  const auto& chunks = item.entry.chunks;
  auto unwritten_at = [&](uint64_t offset) -> std::optional<size_t> {
    size_t i = size_t(std::upper_bound(item.starts.begin(), item.starts.end(), offset) - item.starts.begin());
    for (i = i ? i - 1 : 0; i < chunks.size(); ++i)
      if (!item.written[i]) return i;
    return std::nullopt;
  };
  // A waiting read's range first; the one whose first missing chunk comes first.
  std::optional<size_t> first;
  uint64_t need_end = 0;
  for (const auto& ev : item.waiting) {
    if (covered(item, ev)) continue;
    bool whole = !ev.ranged || ev.count == 0;
    auto at = unwritten_at(whole ? 0 : ev.offset);
    if (at && (!first || *at < *first)) {
      first = at;
      need_end = whole ? item.entry.size : ev.offset + std::min(ev.count, item.entry.size);
    }
  }
  if (!first) first = unwritten_at(0);
  if (!first) return {chunks.size(), chunks.size()};
  size_t last = *first;
  uint64_t bytes = 0;
  while (last < chunks.size() && !item.written[last] &&
         (last == *first || ((bytes + chunks[last].size <= limit || item.starts[last] < need_end) &&
                             bytes + chunks[last].size <= cap))) {
    bytes += chunks[last].size;
    ++last;
  }
  return {*first, last};
}

void Streamer::answer_covered(Item& item) {
  std::vector<Event> ready;
  {
    std::lock_guard lock(m_mutex);
    auto keep = std::stable_partition(item.waiting.begin(), item.waiting.end(),
                                      [&](const Event& ev) { return !covered(item, ev); });
    std::move(keep, item.waiting.end(), std::back_inserter(ready));
    item.waiting.erase(keep, item.waiting.end());
  }
  for (auto& ev : ready) m_group->answer(ev, true);
}

bool Streamer::write_content(Item& item, int fd, ObjectSource& source, bool background, const Records* fetched) {
  ContentWriter out(fd, item.entry, item.path);
  const auto& chunks = item.entry.chunks;
  std::vector<uint8_t> plain;
  if (fetched) {  // small files of one fetch: all of it at hand
    for (const auto& c : chunks) write_chunk(out, *fetched, c, item.path, plain);
    out.finish();
    return true;
  }
  {
    std::lock_guard lock(m_mutex);
    if (item.written.size() != chunks.size()) {
      item.written.assign(chunks.size(), 0);
      item.starts.clear();
      uint64_t at = 0;
      for (const auto& c : chunks) {
        item.starts.push_back(at);
        at += c.size;
      }
    }
  }
  // A read waits: a small first fetch (its range), then larger ones (a reader that goes
  // on through the file waits for each of its reads' ranges).
  uint64_t step = k_first_bytes;
  for (;;) {
    std::pair<size_t, size_t> run;
    bool urgent = false;
    {
      std::lock_guard lock(m_mutex);
      // A read waits: not held to the background fill's batch (nor its limit: throttle()).
      urgent = !background || !item.waiting.empty();
      // The reads' filler with no read left on this file and one waiting on another:
      // that one first, this one after it (where it stopped).
      if (!background && item.waiting.empty() &&
          std::any_of(m_urgent.begin(), m_urgent.end(), [](const Item* i) { return !i->waiting.empty(); }))
        return false;
      uint64_t cap = urgent ? k_batch_bytes : batch_bytes();
      run = next_chunks(item, urgent ? std::min(step, cap) : cap, cap);
    }
    auto [first, last] = run;
    if (first == last) break;
    std::vector<Digest> ids;
    uint64_t bytes = 0;
    for (size_t i = first; i < last; ++i) {
      ids.push_back(chunks[i].id);
      bytes += chunks[i].size;
    }
    // What a read waits for is not the background fill's: it is not charged to the limit
    // (a 16 MB mmap would otherwise hold the fill for a minute at 256K).
    if (background && !urgent) throttle(bytes, &item);
    auto blob = source.records(ids);
    Records own;
    store::RecordReader reader(blob, "restore " + item.path);
    while (auto rec = reader.next()) own.emplace(rec->id, *rec);
    for (size_t i = first; i < last; ++i) {
      out.seek(item.starts[i]);
      write_chunk(out, own, chunks[i], item.path, plain);
    }
    {
      std::lock_guard lock(m_mutex);
      std::fill(item.written.begin() + long(first), item.written.begin() + long(last), 1);
    }
    if (m_group) answer_covered(item);
    step = urgent ? std::min(step * 2, k_batch_bytes) : k_first_bytes;
  }
  out.finish();
  return true;
}

uint64_t Streamer::batch_bytes() const {
  if (!m_opts.bytes_per_second) return k_batch_bytes;
  return std::clamp<uint64_t>(m_opts.bytes_per_second / 4, 64u << 10, k_batch_bytes);
}

/// A token bucket: `bytes` are taken before they are fetched (a batch is at most a
/// quarter of a second's worth, batch_bytes()); the bucket holds at most one batch, so a
/// fill held back (reads served first) does not save up for a burst later.
void Streamer::throttle(uint64_t bytes, Item* item) {
  if (!m_opts.bytes_per_second) return;
  using namespace std::chrono;
  std::unique_lock lock(m_mutex);
  auto now = steady_clock::now();
  double rate = double(m_opts.bytes_per_second);
  m_tokens = std::min(double(batch_bytes()), m_tokens + duration<double>(now - m_bucket_time).count() * rate);
  m_bucket_time = now;
  m_tokens -= double(bytes);
  if (m_tokens >= 0) return;
  auto due = now + duration_cast<steady_clock::duration>(duration<double>(-m_tokens / rate));
  // Woken early when a read waits for this file: the fill yields to it by finishing the
  // file without its limit.
  m_changed.wait_until(lock, due, [&] { return m_stopping || (item && !item->waiting.empty()); });
}

void Streamer::report() {
  if (!m_opts.progress) return;
  std::lock_guard report_lock(m_report_mutex);
  StreamProgress p;
  {
    std::lock_guard lock(m_mutex);
    p = m_progress;
  }
  m_opts.progress(p);
}

}  // namespace mirage::materialize
