#define FUSE_USE_VERSION 34
#include "cmd/mirage-restore/mount.hpp"

#include <fuse_lowlevel.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <thread>
#include <unordered_map>

#include "libmirage/endpoint/transfer.hpp"
#include "libmirage/mount/filesystem.hpp"
#include "libmirage/util/clock.hpp"
#include "libmirage/util/error.hpp"
#include "libmirage/util/log.hpp"

namespace mirage::restore_cmd {

namespace {

using nlohmann::json;

/// How long the kernel may cache names and attributes: a snapshot never changes.
constexpr double k_cache_seconds = 3600;
/// The layout (snapshots/, latest, by-date/) follows new snapshots: asked for again at
/// most this often, and cached by the kernel no longer.
constexpr double k_refresh_seconds = 5;

mount::Filesystem& fs_of(fuse_req_t req) { return *static_cast<mount::Filesystem*>(fuse_req_userdata(req)); }

/// Open directories and files by handle number. Owned here, not by the kernel's
/// release: one the kernel releases after the session ended is still freed.
template <class T>
class Handles {
 public:
  uint64_t add(std::unique_ptr<T> h) {
    m_open.emplace(++m_last, std::move(h));
    return m_last;
  }
  T& at(uint64_t fh) { return *m_open.at(fh); }
  void erase(uint64_t fh) { m_open.erase(fh); }

 private:
  std::unordered_map<uint64_t, std::unique_ptr<T>> m_open;
  uint64_t m_last = 0;
};
Handles<mount::DirHandle> g_dirs;  // the loop is single-threaded
Handles<mount::FileHandle> g_files;

/// The errno for what an operation threw; failures that are not the caller's (a store
/// that lacks a chunk, a server gone) are logged, as a reader sees only EIO.
int errno_of(std::exception_ptr ex, int usage_errno) {
  try {
    std::rethrow_exception(ex);
  } catch (const Error& e) {
    switch (e.kind()) {
      case ErrorKind::not_found: return ENOENT;
      case ErrorKind::usage: return usage_errno;
      case ErrorKind::permission: util::warn(e.what()); return EACCES;
      default: util::warn(e.what()); return EIO;
    }
  } catch (const std::bad_alloc&) {
    return ENOMEM;
  } catch (const std::exception& e) {
    util::warn(e.what());
    return EIO;
  }
}

/// Runs `op`; an exception becomes an error reply.
template <class F>
void guarded(fuse_req_t req, int usage_errno, F op) {
  try {
    op();
  } catch (...) {
    fuse_reply_err(req, errno_of(std::current_exception(), usage_errno));
  }
}

/// How long the kernel may keep `ino` (its attributes, its names).
double ttl(mount::Filesystem& fs, uint64_t ino) { return fs.changing(ino) ? k_refresh_seconds : k_cache_seconds; }

fuse_entry_param entry_of(mount::Filesystem& fs, const struct stat& st) {
  fuse_entry_param e{};
  e.ino = st.st_ino;
  e.attr = st;
  e.attr_timeout = e.entry_timeout = ttl(fs, st.st_ino);
  return e;
}

void op_init(void*, fuse_conn_info* conn) {
  if (conn->capable & FUSE_CAP_CACHE_SYMLINKS) conn->want |= FUSE_CAP_CACHE_SYMLINKS;
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  guarded(req, ENOTDIR, [&] {
    fuse_entry_param e{};
    try {
      e = entry_of(fs_of(req), fs_of(req).lookup(parent, name));
    } catch (const Error& err) {
      if (err.kind() != ErrorKind::not_found) throw;
      e.entry_timeout = ttl(fs_of(req), parent);  // node 0: "no such name", which the kernel may keep as long
    }
    fuse_reply_entry(req, &e);
  });
}

void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t n) {
  fs_of(req).forget(ino, n);
  fuse_reply_none(req);
}

void op_forget_multi(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; ++i) fs_of(req).forget(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  guarded(req, EINVAL, [&] {
    auto st = fs_of(req).getattr(ino);
    fuse_reply_attr(req, &st, ttl(fs_of(req), ino));
  });
}

void op_readlink(fuse_req_t req, fuse_ino_t ino) {
  guarded(req, EINVAL, [&] { fuse_reply_readlink(req, fs_of(req).readlink(ino).c_str()); });
}

void op_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  guarded(req, ENOTDIR, [&] {
    fi->fh = g_dirs.add(fs_of(req).opendir(ino));
    bool fixed = !fs_of(req).changing(ino);  // the kernel may keep a snapshot's listing: it never changes
    fi->cache_readdir = fixed;
    fi->keep_cache = fixed;
    fuse_reply_open(req, fi);
  });
}

void op_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  g_dirs.erase(fi->fh);
  fuse_reply_err(req, 0);
}

/// One readdir or readdirplus reply: entries from `off` ("." and ".." are 0 and 1, the
/// directory's names from 2) while they fit in `size` bytes.
void read_dir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi, bool plus) {
  guarded(req, EIO, [&] {
    auto& dir = g_dirs.at(fi->fh);
    auto& fs = fs_of(req);
    std::vector<char> buf(size);
    size_t used = 0;
    for (size_t i = static_cast<size_t>(off); i < dir.items.size() + 2; ++i) {
      const char* name = i == 0 ? "." : i == 1 ? ".." : dir.items[i - 2].name.c_str();
      size_t need = plus ? fuse_add_direntry_plus(req, nullptr, 0, name, nullptr, 0)
                         : fuse_add_direntry(req, nullptr, 0, name, nullptr, 0);
      if (used + need > size) break;
      auto next = static_cast<off_t>(i + 1);
      struct stat st {};
      if (i < 2) {  // not looked up: the kernel takes no reference on these
        st.st_ino = ino;
        st.st_mode = S_IFDIR;
      } else if (plus) {
        st = fs.lookup_item(dir, i - 2);
      } else {  // d_ino as stat will give it: a reader skips entries whose d_ino is 0
        st.st_ino = dir.items[i - 2].ino;
        st.st_mode = dir.items[i - 2].type;
      }
      if (plus) {
        fuse_entry_param e = i < 2 ? fuse_entry_param{} : entry_of(fs, st);
        if (i < 2) e.attr = st;
        fuse_add_direntry_plus(req, buf.data() + used, size - used, name, &e, next);
      } else {
        fuse_add_direntry(req, buf.data() + used, size - used, name, &st, next);
      }
      used += need;
    }
    fuse_reply_buf(req, buf.data(), used);
  });
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  read_dir(req, ino, size, off, fi, false);
}

void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  read_dir(req, ino, size, off, fi, true);
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if ((fi->flags & O_ACCMODE) != O_RDONLY) {
    fuse_reply_err(req, EROFS);
    return;
  }
  guarded(req, EINVAL, [&] {
    fi->fh = g_files.add(fs_of(req).open(ino));
    fi->keep_cache = 1;  // a snapshot's file never changes: the page cache stays valid
    fuse_reply_open(req, fi);
  });
}

void op_release(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  g_files.erase(fi->fh);
  fuse_reply_err(req, 0);
}

void op_read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  guarded(req, EIO, [&] {
    static std::vector<uint8_t> buf;  // one request at a time (the single-threaded loop)
    buf.resize(size);
    size_t n = fs_of(req).read(g_files.at(fi->fh), static_cast<uint64_t>(off), buf);
    fuse_reply_buf(req, reinterpret_cast<const char*>(buf.data()), n);
  });
}

/// The xattr protocol: size 0 asks for the length, a too small buffer is ERANGE.
void reply_xattr(fuse_req_t req, const std::string& value, size_t size) {
  if (size == 0) fuse_reply_xattr(req, value.size());
  else if (size < value.size()) fuse_reply_err(req, ERANGE);
  else fuse_reply_buf(req, value.data(), value.size());
}

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  guarded(req, EINVAL, [&] {
    auto value = fs_of(req).getxattr(ino, name);
    if (!value) fuse_reply_err(req, ENODATA);
    else reply_xattr(req, *value, size);
  });
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  guarded(req, EINVAL, [&] {
    std::string names;
    for (const auto& n : fs_of(req).listxattr(ino)) names += n + '\0';
    reply_xattr(req, names, size);
  });
}

/// df: the listed snapshots' sizes, nothing free (read-only).
void op_statfs(fuse_req_t req, fuse_ino_t) {
  guarded(req, EIO, [&] {
    auto u = fs_of(req).usage();
    struct statvfs st {};
    st.f_bsize = st.f_frsize = 4096;
    st.f_blocks = (u.bytes + st.f_frsize - 1) / st.f_frsize;
    st.f_files = u.entries;
    st.f_namemax = 255;
    st.f_flag = ST_RDONLY | ST_NOSUID | ST_NODEV;
    fuse_reply_statfs(req, &st);
  });
}

fuse_lowlevel_ops operations() {
  fuse_lowlevel_ops ops{};
  ops.init = op_init;
  ops.lookup = op_lookup;
  ops.forget = op_forget;
  ops.forget_multi = op_forget_multi;
  ops.getattr = op_getattr;
  ops.readlink = op_readlink;
  ops.opendir = op_opendir;
  ops.readdir = op_readdir;
  ops.readdirplus = op_readdirplus;
  ops.releasedir = op_releasedir;
  ops.open = op_open;
  ops.read = op_read;
  ops.release = op_release;
  ops.getxattr = op_getxattr;
  ops.listxattr = op_listxattr;
  ops.statfs = op_statfs;
  return ops;
}

/// Refuses a mountpoint that is missing, not a directory, not empty, or a mount left
/// behind by a killed one (ENOTCONN); and a missing /dev/fuse.
void check_mountpoint(const std::string& path) {
  auto stale = [&] {
    return Error(ErrorKind::precondition,
                 path + ": a mount whose process is gone is still there: unmount it (fusermount3 -u " + path + ")");
  };
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOTCONN) throw stale();
    if (errno == ENOENT) throw Error(ErrorKind::usage, path + ": no such directory (make an empty one to mount on)");
    throw_errno(ErrorKind::usage, path);
  }
  if (!S_ISDIR(st.st_mode)) throw Error(ErrorKind::usage, path + ": not a directory");
  std::error_code ec;
  std::filesystem::directory_iterator it(path, ec);
  if (ec == std::errc::not_connected) throw stale();  // stat may still answer from the kernel's cache
  if (ec) throw Error(ErrorKind::usage, path + ": " + ec.message());
  if (it != std::filesystem::directory_iterator()) throw Error(ErrorKind::usage, path + ": not an empty directory");
  if (::access("/dev/fuse", R_OK | W_OK) != 0)
    throw Error(ErrorKind::precondition, "/dev/fuse: " + std::string(std::strerror(errno)) +
                                             " (load the fuse module, or give the container the device)");
}

mount::Snapshot snapshot_of(const json& s) {
  mount::Snapshot out{s.at("snapshot_id").get<std::string>(), s.at("time_ns").get<int64_t>(),
                      tree::decode_entry_hex(s.at("root").get<std::string>(), "snapshot " + s.at("snapshot_id").get<std::string>())};
  const json& st = s.value("stats", json::object());
  out.bytes = st.value("bytes", uint64_t(0));
  for (const char* k : {"files", "dirs", "symlinks", "others"}) out.entries += st.value(k, uint64_t(0));
  return out;
}

std::vector<mount::Snapshot> list_snapshots(client::Client& client, const std::string& device_id) {
  std::vector<mount::Snapshot> snaps;
  json list = client.call("snapshot.list", {{"device_id", device_id}});
  for (const auto& s : list["snapshots"]) snaps.push_back(snapshot_of(s));
  return snaps;
}

/// The FUSE session, unmounted and destroyed however the mount ends.
class Session {
 public:
  Session(const MountOptions& o, const std::string& device_id, mount::Filesystem& fs) {
    std::string opts = "ro,nodev,nosuid,default_permissions,fsname=" + mount::fsname(device_id) + ",subtype=mirage";
    if (o.allow_other) opts += ",allow_other";
    std::vector<std::string> argv = {"mirage-restore", "-o", opts};
    if (o.debug) argv.push_back("-d");
    std::vector<char*> ptrs;
    for (auto& a : argv) ptrs.push_back(a.data());
    fuse_args args = FUSE_ARGS_INIT(static_cast<int>(ptrs.size()), ptrs.data());
    auto ops = operations();
    m_se = fuse_session_new(&args, &ops, sizeof ops, &fs);
    fuse_opt_free_args(&args);
    if (!m_se) throw Error(ErrorKind::failed, "mount " + o.mountpoint + ": libfuse refused the options " + opts);
    // The stop signals are blocked (in every thread: the loop's inherits it) and taken by
    // loop()'s sigwait; blocked before the mount, one that comes early waits for it.
    block_stop_signals();
    if (fuse_session_mount(m_se, o.mountpoint.c_str()) != 0)
      throw Error(ErrorKind::failed, "mount " + o.mountpoint + ": the kernel refused the mount (see the message above)");
    m_mounted = true;
  }
  ~Session() {
    if (m_mounted) fuse_session_unmount(m_se);
    if (m_se) fuse_session_destroy(m_se);
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  /// Serves until unmounted from outside or stopped by SIGINT, SIGTERM or SIGHUP. The
  /// loop runs in a thread of its own and this one waits for a signal: a stop unmounts
  /// at once even while a read waits on a server that does not answer (libfuse's own
  /// handlers only ask the loop to end, which it did after that read, up to the HTTP
  /// idle timeout: 300 s). Returns false when such a read was still waiting 3 s after
  /// the unmount: the caller then ends the process (nothing is left to write).
  static void block_stop_signals() { pthread_sigmask(SIG_BLOCK, &stop_signals(), nullptr); }

  bool loop(int& rc) {
    std::atomic<bool> ended{false};
    pthread_t waiter = pthread_self();
    std::thread serve([&] {
      rc = fuse_session_loop(m_se);
      ended = true;
      pthread_kill(waiter, SIGUSR1);
    });
    int sig = 0;
    while (sigwait(&stop_signals(), &sig) != 0) {
    }
    if (sig != SIGUSR1) {  // stopped: the unmount ends the kernel's connection and so the loop
      fuse_session_exit(m_se);
      fuse_session_unmount(m_se);
      m_mounted = false;
      for (int i = 0; i < 30 && !ended; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (!ended) {
        serve.detach();
        return false;
      }
    }
    serve.join();
    return true;
  }

 private:
  static const sigset_t& stop_signals() {
    static const sigset_t set = [] {
      sigset_t s;
      sigemptyset(&s);
      sigaddset(&s, SIGUSR1);  // the loop's end
      // One the tool was started with ignored stays ignored (a blocked signal is queued,
      // ignored or not: it must not be in the set).
      for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
        struct sigaction was {};
        if (sigaction(sig, nullptr, &was) == 0 && was.sa_handler != SIG_IGN) sigaddset(&s, sig);
      }
      return s;
    }();
    return set;
  }
  fuse_session* m_se = nullptr;
  bool m_mounted = false;
};

}  // namespace

int mount(const tool::Common& common, const MountOptions& o) {
  if (o.device.empty()) throw Error(ErrorKind::usage, "--device is required");
  if (o.mountpoint.empty()) throw Error(ErrorKind::usage, "MOUNTPOINT is required");
  check_mountpoint(o.mountpoint);
  Session::block_stop_signals();  // before any thread: none may take a stop signal but loop()'s sigwait
  auto client = tool::connect(common);
  std::vector<mount::Snapshot> snaps;
  mount::Options options;
  options.uid = ::getuid();
  options.gid = ::getgid();
  json latest = client::resolve_snapshot(client, o.device, o.snapshot.empty() ? "latest" : o.snapshot);
  std::string device_id = latest.at("device_id").get<std::string>();
  if (!o.snapshot.empty()) {
    options.single = true;
    snaps.push_back(snapshot_of(latest));
  } else {
    snaps = list_snapshots(client, device_id);
    options.refresh_seconds = k_refresh_seconds;
    options.refresh = [&client, device_id]() -> std::vector<mount::Snapshot> {
      try {
        return list_snapshots(client, device_id);
      } catch (const Error& e) {
        util::warn(std::string("the snapshot list was not refreshed (the mount shows the last one): ") + e.what());
        return {};
      }
    };
  }
  auto source = endpoint::object_source(client, tool::connection_factory(common));
  mount::Filesystem fs(*source, snaps, options);
  auto dates = mount::date_names(snaps);
  json doc = {{"device_id", device_id}, {"mountpoint", std::filesystem::absolute(o.mountpoint).string()},
              {"snapshots", json::array()}};
  for (size_t i = 0; i < snaps.size(); ++i)
    doc["snapshots"].push_back({{"snapshot_id", snaps[i].id},
                                {"time", util::rfc3339(snaps[i].time_ns)},
                                {"path", options.single ? "/" : "snapshots/" + snaps[i].id},
                                {"by_date", options.single ? "" : "by-date/" + dates[i]}});
  if (!options.single) doc["latest"] = snaps.back().id;
  Session session(o, device_id, fs);
  tool::print(common, doc, [&](std::ostream& out) {
    out << "mounted " << snaps.size() << (options.single ? " snapshot (" + snaps.front().id + ")" : " snapshots")
        << " of " << device_id << " read-only at " << o.mountpoint
        << (options.single ? "" : ": snapshots/<id>, latest, by-date/<time>") << "\n";
  });
  std::cout.flush();
  util::log(util::LogLevel::info, "serving " + o.mountpoint + " until Ctrl-C, SIGTERM or fusermount3 -u " + o.mountpoint);
  int rc = 0;
  if (!session.loop(rc)) {
    util::warn("unmounted " + o.mountpoint + " while a read still waited on the server; that read was abandoned");
    std::cout.flush();
    std::_Exit(0);  // the abandoned read's thread still uses the filesystem and its source
  }
  auto st = fs.stats();
  util::log(util::LogLevel::info, "unmounting " + o.mountpoint + " (" + std::to_string(st.chunk_misses) +
                                      " chunks and " + std::to_string(st.tree_misses) + " directories fetched)");
  if (rc < 0 && rc != -EINTR) throw Error(ErrorKind::failed, "mount " + o.mountpoint + ": " + std::strerror(-rc));
  return 0;
}

}  // namespace mirage::restore_cmd
