#include "libmirage/materialize/restorer.hpp"

#include "libmirage/materialize/content.hpp"
#include "libmirage/materialize/metadata.hpp"
#include "libmirage/materialize/stream.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <atomic>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "libmirage/store/record.hpp"
#include "libmirage/util/error.hpp"
#include "libmirage/util/fd.hpp"
#include "libmirage/util/hex.hpp"
#include "libmirage/util/xattr.hpp"

namespace mirage::materialize {

namespace {
/// The verified plain bytes of each record in `blob`, by id.
std::unordered_map<Digest, std::vector<uint8_t>, util::DigestHash> open_all(std::span<const uint8_t> blob) {
  std::unordered_map<Digest, std::vector<uint8_t>, util::DigestHash> out;
  store::RecordReader reader(blob, "trees");
  while (auto rec = reader.next()) {
    std::string what = "tree " + rec->id.hex();
    out.emplace(rec->id, store::open_record(*rec, what));
  }
  return out;
}
}  // namespace

std::unordered_map<Digest, tree::Tree, util::DigestHash> ObjectSource::trees(std::span<const Digest> ids) {
  auto objects = open_all(records(ids));
  auto take = [&](const Digest& id) -> std::vector<uint8_t>& {
    auto it = objects.find(id);
    if (it == objects.end()) throw Error(ErrorKind::integrity, "tree " + id.hex() + " is missing from the store");
    return it->second;
  };
  std::unordered_map<Digest, std::vector<tree::Piece>, util::DigestHash> split;
  std::vector<Digest> piece_ids;
  // How many times load() below fetches each object: its last fetch takes the bytes
  // rather than copying them (a large directory's pieces are megabytes).
  std::unordered_map<Digest, size_t, util::DigestHash> fetches;
  std::unordered_set<Digest, util::DigestHash> seen;
  for (const auto& id : ids) {
    if (!seen.insert(id).second) continue;
    ++fetches[id];
    auto& data = take(id);
    if (!tree::is_index(data)) continue;
    auto& index = split[id] = tree::decode_index(data, "tree " + id.hex());
    for (const auto& p : index) {
      piece_ids.push_back(p.id);
      ++fetches[p.id];
    }
  }
  if (!piece_ids.empty()) {
    std::sort(piece_ids.begin(), piece_ids.end());
    piece_ids.erase(std::unique(piece_ids.begin(), piece_ids.end()), piece_ids.end());
    objects.merge(open_all(records(piece_ids)));
  }
  std::unordered_map<Digest, tree::Tree, util::DigestHash> out;
  for (const auto& id : ids) {
    if (out.count(id)) continue;
    std::string what = "tree " + id.hex();
    out.emplace(id, tree::load(id, [&](const Digest& d) -> std::vector<uint8_t> {
                  auto& data = take(d);
                  if (auto& left = fetches[d]; left > 1) {
                    --left;
                    return data;  // fetched again later
                  }
                  return std::move(data);
                }, what));
  }
  return out;
}

tree::Tree ObjectSource::tree(const Digest& id) { return std::move(trees(std::span(&id, 1)).at(id)); }


namespace {

constexpr uint64_t k_flush_bytes = 32u << 20;
constexpr size_t k_flush_jobs = 2048;

using DirFd = std::shared_ptr<util::Fd>;

constexpr std::string_view k_temp_prefix = ".mirage-restore.";

struct Job {
  // fill: the content of a placeholder the restore made, written into it in place (a
  // hardlink group's first name, once a later name turns out not to be a placeholder).
  enum class Type { file, link, finish_dir, fill } type;
  DirFd dir;           // the parent (file, link) or the directory itself (finish_dir)
  tree::Entry entry;
  std::string path;    // for messages
  DirFd head_dir;      // link: where the group's first member was written
  std::string head_name;
};

class Restorer {
 public:
  Restorer(const RestoreOptions& opts, ObjectSource& source) : m_opts(opts), m_source(source) {}

  RestoreStats run() {
    try {
      walk();
      flush();
      wait_previous();
      hand_over_group_placeholders();
    } catch (...) {
      if (m_pending.valid()) m_pending.wait();
      remove_made_dirs();
      throw;
    }
    m_stats.bytes = m_bytes;
    return m_stats;
  }

 private:
  struct Batch {
    std::vector<Job> jobs;
    std::vector<std::vector<uint8_t>> blobs;  ///< the records, as the source sent them
    std::unordered_map<Digest, store::Record, util::DigestHash> records;
  };

  void walk() {
    DirFd target = open_target();
    std::vector<Job> parents;  // the directories on the way that this restore made
    for (const auto& path : m_opts.paths) {
      auto parts = tree::split_path(path);
      if (parts.empty()) {
        restore_dir_contents(target, m_opts.root, "/");
        if (!m_made_target.empty() || m_opts.overwrite != Overwrite::never)
          queue({Job::Type::finish_dir, target, m_opts.root, "/", nullptr, {}});
        continue;
      }
      // Walk down the snapshot, creating the directories on the way in the target.
      tree::Entry dir = m_opts.root;
      DirFd parent = target;
      std::string shown;
      for (size_t i = 0; i < parts.size(); ++i) {
        shown += "/" + parts[i];
        if (dir.kind != tree::Kind::dir) throw Error(ErrorKind::not_found, "path " + path + ": not in the snapshot");
        tree::Tree t = tree_of(dir, shown.substr(0, shown.size() - parts[i].size() - 1));
        const tree::Entry* e = t.find(parts[i]);
        if (!e) throw Error(ErrorKind::not_found, "path " + path + ": not in the snapshot");
        if (i + 1 == parts.size()) {
          remove_stale_temps(parent->get());
          restore_entry(parent, *e, shown);
        } else {
          if (e->kind == tree::Kind::symlink)  // as mirage-restore ls says it
            throw Error(ErrorKind::not_found, "path " + path + ": " + shown + " is a symlink to " + e->target +
                                                  " (links in a path are not followed)");
          if (e->kind != tree::Kind::dir) throw Error(ErrorKind::not_found, "path " + path + ": " + shown + " is not a directory");
          bool made = false;
          parent = make_dir(parent, e->name, shown, &made);
          if (made) parents.push_back({Job::Type::finish_dir, parent, *e, shown, nullptr, {}});
          dir = *e;
        }
      }
    }
    // Last, deepest first: after every path restored into them (their mtime stays).
    for (auto it = parents.rbegin(); it != parents.rend(); ++it) queue(std::move(*it));
  }

  /// Opens the target, first making what is missing of its path (as mkdir -p: mode 0777
  /// less the umask).
  DirFd open_target() {
    std::filesystem::path to = m_opts.to.lexically_normal();
    if (!to.has_filename() && to.has_parent_path() && to != to.root_path()) to = to.parent_path();  // "dir/"
    std::vector<std::filesystem::path> missing;
    struct stat st;
    for (auto p = to; !p.empty() && ::stat(p.c_str(), &st) != 0 && errno == ENOENT; p = p.parent_path()) {
      missing.push_back(p);
      if (p == p.parent_path()) break;
    }
    for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
      if (::mkdir(it->c_str(), 0777) == 0)
        m_made_target.push_back(*it);
      else if (errno != EEXIST)
        throw_errno("create " + it->string());
    }
    return std::make_shared<util::Fd>(util::open_dir(to.string()));
  }

  /// After a failure: removes the directories this restore made that are still empty,
  /// deepest first (one holding a file written whole stays, and so do its parents).
  void remove_made_dirs() noexcept {
    for (auto it = m_made.rbegin(); it != m_made.rend(); ++it)
      ::unlinkat(it->first->get(), it->second.c_str(), AT_REMOVEDIR);
    for (auto it = m_made_target.rbegin(); it != m_made_target.rend(); ++it) ::rmdir(it->c_str());
  }

  void queue(Job job) {
    if (job.type == Job::Type::file || job.type == Job::Type::fill) m_pending_bytes += job.entry.size;
    m_jobs.push_back(std::move(job));
    if (m_pending_bytes >= k_flush_bytes || m_jobs.size() >= k_flush_jobs) flush();
  }

  /// Creates (or reuses) directory `name` in `parent`; never follows a symlink. `made`
  /// (when given) says whether it was created.
  /// (One made by an earlier restore that was killed or failed before finishing it, and
  /// so still carries made_mark(), counts as made.)
  DirFd make_dir(const DirFd& parent, const std::string& name, const std::string& shown, bool* made = nullptr) {
    bool created = ::mkdirat(parent->get(), name.c_str(), 0700) == 0;
    if (!created && errno != EEXIST) throw_errno("create directory " + shown);
    if (created) m_made.emplace_back(parent, name);
    auto fd = std::make_shared<util::Fd>(util::open_dir_at(parent->get(), name, m_opts.to.string() + shown));
    if (created)
      ::fsetxattr(fd->get(), made_mark(), "1", 1, 0);  // a filesystem without xattrs: a rerun keeps what it finds
    else
      created = ::fgetxattr(fd->get(), made_mark(), nullptr, 0) >= 0;
    if (made) *made = created;
    return fd;
  }

  /// What a directory this restore made carries until it gets the snapshot's metadata
  /// (it stays 0700 and the restoring user's until then): a rerun after a kill or a
  /// failure finishes it whatever --overwrite says (`never` kept it as it was). As root
  /// a trusted.* name, which no user can put on a directory of theirs.
  static const char* made_mark() { return running_as_root() ? "trusted.mirage.restoring" : "user.mirage.restoring"; }

  void restore_entry(const DirFd& parent, const tree::Entry& e, const std::string& path) {
    if (e.kind != tree::Kind::dir && keep_existing(parent->get(), e, path)) return;
    switch (e.kind) {
      case tree::Kind::dir: {
        bool made = false;
        DirFd fd = make_dir(parent, e.name, path, &made);
        m_stats.dirs++;
        restore_dir_contents(fd, e, path);
        if (made || m_opts.overwrite != Overwrite::never) queue({Job::Type::finish_dir, fd, e, path, nullptr, {}});
        break;
      }
      case tree::Kind::file:
        if (link_to_group(parent, e, path)) return;
        m_stats.files++;
        if (e.size > 0 && m_opts.placeholder && m_opts.placeholder(path, e))
          make_placeholder(parent, e, path);
        else
          queue({Job::Type::file, parent, e, path, nullptr, {}});
        break;
      default:
        if (link_to_group(parent, e, path)) return;
        make_special(parent->get(), e, path);
    }
  }

  /// True when `e` is at the target already and Overwrite says to leave it there. An
  /// unchanged file (if_changed) gets the snapshot's owner, mode, xattrs and times.
  bool keep_existing(int dirfd, const tree::Entry& e, const std::string& path) {
    if (m_opts.overwrite == Overwrite::always) return false;
    struct stat st;
    if (::fstatat(dirfd, e.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return false;  // nothing there (or unreadable)
    if (m_opts.overwrite == Overwrite::if_changed) {
      auto same = [&](const struct stat& s) {
        return S_ISREG(s.st_mode) && uint64_t(s.st_size) == e.size &&
               int64_t(s.st_mtim.tv_sec) * 1000000000 + s.st_mtim.tv_nsec == e.mtime_ns;
      };
      if (e.kind != tree::Kind::file || !same(st)) return false;
      // Through an fd opened without following a symlink: what was checked is what is changed.
      util::Fd fd(::openat(dirfd, e.name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
      if (!fd || ::fstat(fd.get(), &st) != 0 || !same(st) || is_placeholder(fd.get())) return false;
      set_metadata_fd(fd.get(), e, path, [this](std::string m) { warn(std::move(m)); });
    }
    m_stats.kept++;
    return true;
  }

  /// For a hardlink group member after the first restored one: queues the link and
  /// returns true. The first member becomes the group's head (and returns false).
  bool link_to_group(const DirFd& parent, const tree::Entry& e, const std::string& path) {
    if (e.link_group.empty()) return false;
    auto [it, first] = m_groups.emplace(e.link_group, std::make_pair(parent, e.name));
    if (first) return false;
    m_stats.hardlinks++;
    // A name the streaming restore writes whole (the minimal set) of a group whose first
    // name is a placeholder: that placeholder is filled now, in place (every name of the
    // group is the one inode), and is not handed on to be filled later.
    auto held = m_group_placeholders.find(e.link_group);
    if (held != m_group_placeholders.end() && !held->second.filled && !(e.size > 0 && m_opts.placeholder(path, e))) {
      held->second.filled = true;
      m_stats.placeholders--;
      const Job& head = held->second.job;
      queue({Job::Type::fill, head.dir, head.entry, head.path, nullptr, {}});
    }
    queue({Job::Type::link, parent, e, path, it->second.first, it->second.second});
    return true;
  }

  /// The listing of directory `dir`; a fetch that fails is rethrown (same kind) naming
  /// the directory, whose whole contents it affects.
  tree::Tree tree_of(const tree::Entry& dir, const std::string& path) {
    try {
      return m_source.tree(dir.subtree);
    } catch (const Error& e) {
      if (e.kind() == ErrorKind::unavailable) throw;
      throw Error(e.kind(), "restore " + (path.empty() ? std::string("/") : path) + " (the directory's listing): " + e.what());
    }
  }

  /// Removes the temporary files a killed restore left in directory `fd` (once per
  /// directory and restore: later, this restore's own temporary files are there).
  void remove_stale_temps(int fd) {
    struct stat st;
    if (::fstat(fd, &st) != 0 || !m_cleaned.insert({st.st_dev, st.st_ino}).second) return;
    std::vector<std::string> names;
    try {
      names = util::dir_names(fd, "restore target");
    } catch (const Error&) {
      return;  // unreadable: the restore's own writes there will say so
    }
    for (const auto& name : names)  // never a directory: temps are not
      if (name.starts_with(k_temp_prefix)) ::unlinkat(fd, name.c_str(), 0);
  }

  void restore_dir_contents(const DirFd& fd, const tree::Entry& dir, const std::string& path) {
    remove_stale_temps(fd->get());
    tree::Tree t = tree_of(dir, path);
    for (const auto& child : t.entries) restore_entry(fd, child, tree::child_path(path, child.name));
  }

  void warn(std::string message) {
    std::lock_guard lock(m_warn_mutex);
    m_stats.warnings.push_back(std::move(message));
  }

  std::string temp_name() { return std::string(k_temp_prefix) + util::random_hex(8); }

  void apply_meta(int dirfd, const std::string& name, const tree::Entry& e, const std::string& path) {
    set_metadata(dirfd, name, e, path, [this](std::string m) { warn(std::move(m)); }, true);
  }

  void install(int dirfd, const std::string& tmp, const std::string& name, const std::string& path) {
    if (::renameat(dirfd, tmp.c_str(), dirfd, name.c_str()) != 0) {
      int err = errno;
      ::unlinkat(dirfd, tmp.c_str(), 0);
      if (err == EISDIR)  // as a symlink where a directory goes: never removed for it, exit 5
        throw Error(ErrorKind::precondition, "put " + path + " in place: a directory is there, where the snapshot " +
                                                 "has no directory; it is left as it is (move it away to restore this)");
      errno = err;
      throw_errno("put " + path + " in place");
    }
  }

  void make_special(int dirfd, const tree::Entry& e, const std::string& path) {
    std::string tmp = temp_name();
    make_node(dirfd, tmp, e, path);
    if (e.kind == tree::Kind::symlink)
      m_stats.symlinks++;
    else
      m_stats.others++;
    try {
      apply_meta(dirfd, tmp, e, path);
    } catch (...) {
      ::unlinkat(dirfd, tmp.c_str(), 0);
      throw;
    }
    install(dirfd, tmp, e.name, path);
  }

  /// A file of the entry's size that is all hole, with its metadata and the placeholder
  /// mark, put in place; then handed to on_placeholder (a hardlink group's first name
  /// only after the walk: a later name may need it whole).
  void make_placeholder(const DirFd& dir, const tree::Entry& e, const std::string& path) {
    int dirfd = dir->get();
    std::string tmp = temp_name();
    util::Fd fd(::openat(dirfd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd) throw_errno("create " + path);
    try {
      make_placeholder_fd(fd.get(), e, path, [this](std::string m) { warn(std::move(m)); });
    } catch (...) {
      ::unlinkat(dirfd, tmp.c_str(), 0);
      throw;
    }
    install(dirfd, tmp, e.name, path);
    m_stats.placeholders++;
    if (!e.link_group.empty())
      m_group_placeholders.emplace(e.link_group, HeldPlaceholder{{Job::Type::fill, dir, e, path, nullptr, {}}, false});
    else if (m_opts.on_placeholder)
      m_opts.on_placeholder(dirfd, e.name, path, e);
  }

  /// After the walk: the hardlink groups' placeholders no name needed whole.
  void hand_over_group_placeholders() {
    for (auto& [group, held] : m_group_placeholders)
      if (!held.filled && m_opts.on_placeholder)
        m_opts.on_placeholder(held.job.dir->get(), held.job.entry.name, held.job.path, held.job.entry);
    m_group_placeholders.clear();
  }

  /// Fetches the chunks of the queued jobs, then hands them to a writer task while the
  /// walk goes on: fetching batch N+1 overlaps writing batch N.
  void flush() {
    auto batch = std::make_shared<Batch>();
    batch->jobs = std::move(m_jobs);
    m_jobs.clear();
    m_pending_bytes = 0;
    std::vector<Digest> ids;
    for (const auto& job : batch->jobs)
      if (job.type == Job::Type::file || job.type == Job::Type::fill)
        for (const auto& c : job.entry.chunks) ids.push_back(c.id);
    if (!ids.empty()) {
      try {
        batch->blobs = m_source.record_parts(ids);
        for (const auto& blob : batch->blobs) {
          store::RecordReader reader(blob, "restore");
          while (auto rec = reader.next()) batch->records.emplace(rec->id, *rec);
        }
      } catch (const Error& e) {
        if (e.kind() == ErrorKind::unavailable) throw;  // the server is away: asking per file cannot help
        throw Error(e.kind(), std::string(e.what()) + affected_files(batch->jobs));
      }
    }
    wait_previous();
    if (m_opts.progress) m_opts.progress(m_bytes, m_files_written);
    m_pending = std::async(std::launch::async, [this, batch] { execute(*batch); });
  }

  /// After a fetch failed (a pack missing or damaged): which files of `jobs` cannot be
  /// fetched, asked one file at a time, as "; files affected: /a, /b (N in all)".
  std::string affected_files(const std::vector<Job>& jobs) {
    constexpr size_t k_named = 10;
    std::vector<std::string> affected;
    size_t count = 0;
    for (const auto& job : jobs) {
      if (job.type != Job::Type::file || job.entry.chunks.empty()) continue;
      std::vector<Digest> ids;
      for (const auto& c : job.entry.chunks) ids.push_back(c.id);
      bool bad = false;
      try {
        auto blob = m_source.records(ids);
        std::unordered_map<Digest, uint64_t, util::DigestHash> got;
        store::RecordReader reader(blob, "restore " + job.path);
        while (auto rec = reader.next()) got.emplace(rec->id, rec->raw_size);
        for (const auto& c : job.entry.chunks) bad = bad || !got.count(c.id);
      } catch (const Error&) {
        bad = true;
      }
      if (!bad) continue;
      if (affected.size() < k_named) affected.push_back(job.path);
      count++;
    }
    if (affected.empty()) return "";
    std::string out = "; files affected:";
    for (size_t i = 0; i < affected.size(); ++i) out += (i ? ", " : " ") + affected[i];
    return out + " (" + std::to_string(count) + " in all, in this batch of " + std::to_string(jobs.size()) + " entries)";
  }

  void wait_previous() {
    if (m_pending.valid()) m_pending.get();  // rethrows the writer's error
  }

  /// Files on two threads (they are independent), then links and directory metadata
  /// in walk order (they need the files before them).
  void execute(Batch& batch) {
    std::atomic<size_t> next{0};
    std::exception_ptr error;
    std::mutex error_mutex;
    auto worker = [&] {
      std::vector<uint8_t> plain;
      for (;;) {
        size_t i = next++;
        if (i >= batch.jobs.size()) return;
        if (batch.jobs[i].type != Job::Type::file && batch.jobs[i].type != Job::Type::fill) continue;
        try {
          if (batch.jobs[i].type == Job::Type::fill)
            fill_placeholder(batch.jobs[i], batch.records, plain);
          else
            write_file(batch.jobs[i], batch.records, plain);
        } catch (...) {
          std::lock_guard lock(error_mutex);
          if (!error) error = std::current_exception();
          next = batch.jobs.size();
        }
      }
    };
    std::thread helper(worker);
    worker();
    helper.join();
    if (error) std::rethrow_exception(error);
    for (auto& job : batch.jobs) {
      if (job.type == Job::Type::link) write_link(job);
      if (job.type == Job::Type::finish_dir) finish_dir(job);
    }
  }

  void write_file(const Job& job, const std::unordered_map<Digest, store::Record, util::DigestHash>& records,
                  std::vector<uint8_t>& plain) {
    int dirfd = job.dir->get();
    std::string tmp = temp_name();
    util::Fd fd(::openat(dirfd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd) throw_errno("create " + job.path);
    try {
      write_content(fd.get(), job, records, plain);
      set_metadata_fd(fd.get(), job.entry, job.path, [this](std::string m) { warn(std::move(m)); });
    } catch (...) {
      ::unlinkat(dirfd, tmp.c_str(), 0);
      throw;
    }
    install(dirfd, tmp, job.entry.name, job.path);
    m_files_written++;
  }

  void write_content(int fd, const Job& job, const std::unordered_map<Digest, store::Record, util::DigestHash>& records,
                     std::vector<uint8_t>& plain) {
    ContentWriter out(fd, job.entry, job.path);
    const Digest* opened = nullptr;  // what `plain` holds: a chunk repeated (a hole's zeros) is opened once
    for (const auto& c : job.entry.chunks) {
      if (opened && *opened == c.id) {
        out.write_again(plain);
        m_bytes += c.size;
        continue;
      }
      auto it = records.find(c.id);
      if (it == records.end())
        throw Error(ErrorKind::integrity, "restore " + job.path + ": chunk " + c.id.hex() + " is missing from the store");
      if (it->second.raw_size != c.size)
        throw Error(ErrorKind::integrity, "restore " + job.path + ": chunk " + c.id.hex() + " has the wrong size");
      plain.resize(c.size);
      store::open_record_into(it->second, plain, "restore " + job.path);
      opened = &c.id;
      out.write(plain);
      m_bytes += c.size;
    }
    out.finish();
  }

  /// Writes the content of the placeholder this restore made at `job.path` into it (the
  /// same inode: its other names see it), its metadata again, makes it durable and
  /// only then removes the mark (a kill before leaves a placeholder a rerun makes again).
  void fill_placeholder(const Job& job, const std::unordered_map<Digest, store::Record, util::DigestHash>& records,
                        std::vector<uint8_t>& plain) {
    int dirfd = job.dir->get();
    util::Fd fd(::openat(dirfd, job.entry.name.c_str(), O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    struct stat st;
    if (!fd || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || !is_placeholder(fd.get()))
      throw Error(ErrorKind::failed, "restore " + job.path + ": its placeholder changed while the restore ran");
    write_content(fd.get(), job, records, plain);
    set_metadata_fd(fd.get(), job.entry, job.path, [this](std::string m) { warn(std::move(m)); });
    if (::fsync(fd.get()) != 0) throw_errno("make " + job.path + " durable");
    if (::fremovexattr(fd.get(), k_placeholder_xattr) != 0 && errno != ENODATA)
      throw_errno("unmark the placeholder of " + job.path);
  }

  void write_link(const Job& job) {
    int dirfd = job.dir->get();
    std::string tmp = temp_name();
    if (::linkat(job.head_dir->get(), job.head_name.c_str(), dirfd, tmp.c_str(), 0) != 0)
      throw_errno("hardlink " + job.path);
    install(dirfd, tmp, job.entry.name, job.path);
  }

  void finish_dir(const Job& job) {
    set_metadata_fd(job.dir->get(), job.entry, job.path, [this](std::string m) { warn(std::move(m)); });
    ::fremovexattr(job.dir->get(), made_mark());  // none there (a directory kept): ENODATA
  }

  const RestoreOptions& m_opts;
  ObjectSource& m_source;
  RestoreStats m_stats;
  std::vector<Job> m_jobs;
  uint64_t m_pending_bytes = 0;
  std::map<std::string, std::pair<DirFd, std::string>> m_groups;
  /// Streaming: hardlink groups whose first name is a placeholder, not yet handed over.
  struct HeldPlaceholder {
    Job job;
    bool filled = false;  ///< a later name is written whole: filled in place by the restore
  };
  std::map<std::string, HeldPlaceholder> m_group_placeholders;
  std::atomic<uint64_t> m_bytes{0};
  std::atomic<uint64_t> m_files_written{0};  ///< files written whole and in place
  std::mutex m_warn_mutex;
  std::set<std::pair<dev_t, ino_t>> m_cleaned;  ///< directories remove_stale_temps() has seen
  std::vector<std::pair<DirFd, std::string>> m_made;  ///< directories made in the target, in order
  std::vector<std::filesystem::path> m_made_target;   ///< the target and its parents that were missing
  std::future<void> m_pending;  ///< the writer task of the previous batch
};

}  // namespace

void to_json(nlohmann::json& j, const RestoreStats& s) {
  j = {{"files", s.files}, {"dirs", s.dirs}, {"symlinks", s.symlinks}, {"others", s.others},
       {"hardlinks", s.hardlinks}, {"kept", s.kept}, {"bytes", s.bytes}, {"wire_bytes", s.wire_bytes}, {"placeholders", s.placeholders},
       {"warnings", s.warnings}};
}

std::optional<Overwrite> overwrite_from_name(std::string_view name) {
  if (name == "always") return Overwrite::always;
  if (name == "if-changed") return Overwrite::if_changed;
  if (name == "never") return Overwrite::never;
  return std::nullopt;
}

RestoreStats restore(const RestoreOptions& options, ObjectSource& source) { return Restorer(options, source).run(); }

uint64_t bytes_under(ObjectSource& source, const tree::Entry& root, const std::vector<std::string>& paths) {
  constexpr size_t k_trees_per_call = 1024;
  uint64_t total = 0;
  std::unordered_set<std::string> groups;
  // A level's directories by tree id, with how often each occurs (copies of a directory
  // share a tree, and each copy is restored).
  std::unordered_map<Digest, uint64_t, util::DigestHash> level;
  auto count = [&](const tree::Entry& e, uint64_t times) {
    if (e.kind == tree::Kind::dir) level[e.subtree] += times;
    if (e.kind != tree::Kind::file) return;
    if (!e.link_group.empty()) {
      if (!groups.insert(e.link_group).second) return;
      times = 1;
    }
    for (const auto& c : e.chunks) total += c.size * times;
  };
  for (const auto& path : paths) {
    auto e = lookup(source, root, path);
    if (!e) throw Error(ErrorKind::not_found, "path " + path + ": not in the snapshot");
    count(*e, 1);
  }
  while (!level.empty()) {
    auto this_level = std::move(level);
    level.clear();
    std::vector<Digest> ids;
    for (const auto& [id, times] : this_level) ids.push_back(id);
    for (size_t at = 0; at < ids.size(); at += k_trees_per_call) {
      std::span<const Digest> part(ids.data() + at, std::min(k_trees_per_call, ids.size() - at));
      for (const auto& [id, t] : source.trees(part))
        for (const auto& e : t.entries) count(e, this_level.at(id));
    }
  }
  return total;
}

std::optional<tree::Entry> lookup(ObjectSource& source, const tree::Entry& root, std::string_view path) {
  tree::Entry cur = root;
  for (const auto& part : tree::split_path(path)) {
    if (cur.kind != tree::Kind::dir) return std::nullopt;
    tree::Tree t = source.tree(cur.subtree);
    const tree::Entry* e = t.find(part);
    if (!e) return std::nullopt;
    cur = *e;
  }
  return cur;
}

}  // namespace mirage::materialize
