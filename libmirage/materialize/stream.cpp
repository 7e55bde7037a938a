#include "libmirage/materialize/stream.hpp"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <unordered_map>

#include "libmirage/materialize/content.hpp"
#include "libmirage/materialize/metadata.hpp"
#include "libmirage/store/record.hpp"
#include "libmirage/tree/tree.hpp"
#include "libmirage/util/error.hpp"

namespace mirage::materialize {

namespace {
constexpr uint64_t k_batch_bytes = 8u << 20;  ///< chunks asked for at once while filling a file
}

void mark_placeholder(int fd, const std::string& path) {
  if (::fsetxattr(fd, k_placeholder_xattr, "1", 1, 0) != 0)
    throw_errno("mark the placeholder of " + path + " (streaming needs user xattrs on the target's file system)");
}

bool is_placeholder(int fd) {
  char value[4];
  return ::fgetxattr(fd, k_placeholder_xattr, value, sizeof value) >= 0;
}

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
  item->path = path;
  item->entry = entry;
  item->rank = m_opts.rank ? m_opts.rank(path, entry) : 0;
  std::lock_guard lock(m_mutex);
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
        it->second->state == Item::State::failed) {
      bool allow = it == m_by_inode.end() || it->second->state == Item::State::done;
      lock.unlock();
      m_group->answer(*ev, allow);
      continue;
    }
    Item* item = it->second;
    if (item->state == Item::State::pending && item->waiting.empty()) m_urgent.push_back(item);
    item->waiting.push_back(std::move(*ev));
    m_progress.on_demand += item->waiting.size() == 1;
    lock.unlock();
    m_changed.notify_all();
  }
}

/// The on-demand filler: files a program is waiting on, one at a time.
void Streamer::serve_reads() {
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
  for (Item* item : order) {
    if (!claim(*item)) continue;
    if (!source) source = m_opts.source();
    fill_item(*item, *source, true);
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

std::vector<std::string> Streamer::warnings() const {
  std::lock_guard lock(m_mutex);
  return m_warnings;
}

/// Fills `item` in place and answers the reads it held; a failure (the file stays a
/// placeholder) is kept for fill() to throw.
void Streamer::fill_item(Item& item, ObjectSource& source, bool background) {
  bool ok = false;
  try {
    // Down the target without following a symlink: the tree may have changed since.
    util::Fd dir = util::open_dir(m_opts.to.string());
    auto parts = tree::split_path(item.path);
    for (size_t i = 0; i + 1 < parts.size(); ++i) dir = util::open_dir_at(dir.get(), parts[i], item.path);
    const std::string& name = parts.back();
    util::Fd fd(::openat(dir.get(), name.c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC));
    struct stat st;
    if (!fd || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || uint64_t(st.st_size) != item.entry.size ||
        !is_placeholder(fd.get())) {
      std::lock_guard lock(m_mutex);
      m_warnings.push_back(item.path + ": changed at the target while it was being restored; left as it is");
    } else {
      write_content(item, fd.get(), source, background);
      if (::fsync(fd.get()) != 0) throw_errno("make " + item.path + " durable");
      // Writing dropped any file capability and moved the times: the snapshot's again.
      set_metadata_fd(fd.get(), dir.get(), name, item.entry, item.path, [this](std::string m) {
        std::lock_guard lock(m_mutex);
        m_warnings.push_back(std::move(m));
      });
      if (::fremovexattr(fd.get(), k_placeholder_xattr) != 0 && errno != ENODATA)
        throw_errno("unmark the placeholder of " + item.path);
      if (m_group) m_group->unmark(fd.get());
    }
    ok = true;
  } catch (...) {
    std::lock_guard lock(m_mutex);
    if (!m_error) m_error = std::current_exception();
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

void Streamer::write_content(Item& item, int fd, ObjectSource& source, bool background) {
  ContentWriter out(fd, item.entry, item.path);
  const auto& chunks = item.entry.chunks;
  std::vector<uint8_t> plain;
  auto start = std::chrono::steady_clock::now();
  uint64_t written = 0;
  for (size_t first = 0; first < chunks.size();) {
    std::vector<Digest> ids;
    uint64_t bytes = 0;
    size_t last = first;
    while (last < chunks.size() && (ids.empty() || bytes < k_batch_bytes)) {
      ids.push_back(chunks[last].id);
      bytes += chunks[last].size;
      ++last;
    }
    auto blob = source.records(ids);
    std::unordered_map<Digest, store::Record, util::DigestHash> records;
    store::RecordReader reader(blob, "restore " + item.path);
    while (auto rec = reader.next()) records.emplace(rec->id, *rec);
    for (size_t i = first; i < last; ++i) {
      auto it = records.find(chunks[i].id);
      if (it == records.end() || it->second.raw_size != chunks[i].size)
        throw Error(ErrorKind::integrity, "restore " + item.path + ": chunk " + chunks[i].id.hex() + " is missing from the store");
      plain.resize(chunks[i].size);
      store::open_record_into(it->second, plain, "restore " + item.path);
      out.write(plain);
    }
    written += bytes;
    first = last;
    if (background && m_opts.bytes_per_second) {
      auto due = start + std::chrono::duration<double>(double(written) / double(m_opts.bytes_per_second));
      std::unique_lock lock(m_mutex);
      // Woken early when a read waits: the background fill yields to it by finishing
      // this file without its limit.
      m_changed.wait_until(lock, std::chrono::time_point_cast<std::chrono::steady_clock::duration>(due),
                           [&] { return m_stopping || !item.waiting.empty(); });
    }
  }
  out.finish();
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
