#include "libmirage/endpoint/identity.hpp"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstring>
#include <sstream>

#include "libmirage/util/digest.hpp"
#include "libmirage/util/error.hpp"
#include "libmirage/util/fd.hpp"
#include "libmirage/util/hex.hpp"
#include "libmirage/util/log.hpp"
#include "libmirage/util/text.hpp"

namespace mirage::endpoint {

namespace fs = std::filesystem;
using nlohmann::json;

bool is_real_root(const fs::path& root) {
  std::error_code ec;
  return fs::equivalent(root, "/", ec);
}

namespace {

std::optional<std::string> read_trimmed(const fs::path& p) {
  try {
    std::string s = util::trim(util::read_file(p));
    if (!s.empty()) return s;
  } catch (const Error&) {
  }
  return std::nullopt;
}

/// Opens ROOT/REL for reading without ever leaving ROOT. With openat2 (Linux 5.6),
/// symlinks resolve as if ROOT were "/" (RESOLVE_IN_ROOT: "/etc/shadow" and "../.." stay
/// inside, so etc/os-release -> ../usr/lib/os-release works as on the booted system).
/// Without it (ENOSYS, or EPERM from a seccomp filter) each component is opened with
/// O_NOFOLLOW, so any symlink is refused. O_NONBLOCK: a FIFO does not block the open.
/// Returns an empty Fd with errno set on failure.
util::Fd open_in_root(const fs::path& root, const std::string& rel) {
  util::Fd dir(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return {};
  constexpr uint64_t k_flags = O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
  open_how how{};
  how.flags = k_flags;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  long fd = ::syscall(SYS_openat2, dir.get(), rel.c_str(), &how, sizeof how);
  if (fd >= 0) return util::Fd(static_cast<int>(fd));
  if (errno != ENOSYS && errno != EPERM) return {};
  size_t at = 0;
  for (;;) {
    size_t slash = rel.find('/', at);
    std::string part = rel.substr(at, slash == std::string::npos ? std::string::npos : slash - at);
    if (part.empty() || part == "." || part == "..") {
      errno = EINVAL;
      return {};
    }
    bool last = slash == std::string::npos;
    int flags = last ? static_cast<int>(k_flags) | O_NOFOLLOW : O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    util::Fd next(::openat(dir.get(), part.c_str(), flags));
    if (!next || last) return next;
    dir = std::move(next);
    at = slash + 1;
  }
}

/// The content of the identity file ROOT/REL (hostname, machine-id, os-release), at most
/// `cap` bytes, read without leaving ROOT (open_in_root). Absent: nullopt. A file that
/// cannot be opened safely, is not a regular file (a FIFO, /dev/zero) or is larger than
/// `cap`: nullopt and a warning, so nothing outside ROOT is read and nothing blocks.
std::optional<std::string> read_identity_file(const fs::path& root, const std::string& rel, size_t cap) {
  std::string display = (root / rel).string();
  util::Fd fd = open_in_root(root, rel);
  if (!fd) {
    if (errno != ENOENT) util::warn(display + ": not read: " + std::string(strerror(errno)));
    return std::nullopt;
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    util::warn(display + ": not read: not a regular file");
    return std::nullopt;
  }
  std::string data(cap + 1, '\0');
  size_t n = 0;
  try {
    n = util::read_full(fd.get(), std::span(reinterpret_cast<uint8_t*>(data.data()), data.size()), display);
  } catch (const Error& e) {
    util::warn(std::string(e.what()) + " (not used)");
    return std::nullopt;
  }
  if (n > cap) {
    util::warn(display + ": not read: larger than " + std::to_string(cap) + " bytes");
    return std::nullopt;
  }
  data.resize(n);
  return data;
}

constexpr size_t k_identity_cap = 4096;

std::optional<std::string> read_identity(const fs::path& root, const std::string& rel) {
  auto s = read_identity_file(root, rel, k_identity_cap);
  if (!s) return std::nullopt;
  std::string t = util::trim(*s);
  if (t.empty()) return std::nullopt;
  return t;
}

bool all_of(const std::string& s, const char* chars) { return s.find_first_not_of(chars) == std::string::npos; }

}  // namespace

void check_device_id(const std::string& id) {
  // As the server checks it (server/devices.cpp), before anything is made for it.
  bool ok = !id.empty() && id.size() <= 128 && id != "." && id != ".." && id[0] != '-' &&
            all_of(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:");
  if (!ok)
    throw Error(ErrorKind::usage,
                "device id '" + id + "': use letters, digits and - _ . : (at most 128, not starting with -; not . or ..)");
}

std::optional<std::string> detect_device_id(const fs::path& root) {
  auto lower = [](std::string id) {
    for (auto& c : id) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
    return id;
  };
  if (is_real_root(root)) {
    // The kernel's file; a UUID (hex and dashes), else the machine-id below.
    if (auto uuid = read_trimmed("/sys/class/dmi/id/product_uuid")) {
      std::string id = lower(*uuid);
      if (id.size() == 36 && all_of(id, "0123456789abcdef-")) return id;
      util::warn("/sys/class/dmi/id/product_uuid is not a UUID; using etc/machine-id");
    }
  }
  auto mid = read_identity(root, "etc/machine-id");
  if (!mid) return std::nullopt;
  // machine-id(5): 32 hex digits. Anything else must not name the state directory.
  std::string id = lower(*mid);
  if (id.size() != 32 || !all_of(id, "0123456789abcdef"))
    throw Error(ErrorKind::usage, (root / "etc/machine-id").string() + ": not a machine id (32 hex digits); pass --device-id");
  return id;
}

json inventory(const fs::path& root, std::string* hostname) {
  json inv = json::object();
  struct utsname u;
  if (::uname(&u) == 0) inv["arch"] = u.machine;
  std::string host;
  if (auto h = read_identity(root, "etc/hostname")) host = *h;
  if (host.empty() && is_real_root(root)) {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) == 0) host = buf;
  }
  if (hostname) *hostname = host;
  std::istringstream os(read_identity_file(root, "etc/os-release", 64 * 1024).value_or(""));
  std::string line;
  while (std::getline(os, line)) {
    auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string key = line.substr(0, eq), value = line.substr(eq + 1);
    if (value.size() >= 2 && (value[0] == '"' || value[0] == '\'')) value = value.substr(1, value.size() - 2);
    if (key == "ID") inv["os_id"] = value;
    if (key == "VERSION_ID") inv["os_version"] = value;
    if (key == "PRETTY_NAME") inv["os_name"] = value;
  }
  // Free bytes (for an unprivileged user) of the filesystem holding the root: what an OS
  // migration's preflight compares with the new base's size.
  struct statvfs fs_stat;
  if (::statvfs(root.c_str(), &fs_stat) == 0)
    inv["root_free_bytes"] = static_cast<uint64_t>(fs_stat.f_bavail) * static_cast<uint64_t>(fs_stat.f_frsize);
  if (is_real_root(root)) {
    for (const char* field : {"sys_vendor", "product_name", "product_version"})
      if (auto v = read_trimmed(fs::path("/sys/class/dmi/id") / field)) inv[field] = *v;
    // PCI ids as "vendor:device" (hex, without 0x), for driver profiles.
    json pci = json::array();
    std::error_code ec;
    for (const auto& dev : fs::directory_iterator("/sys/bus/pci/devices", ec)) {
      auto v = read_trimmed(dev.path() / "vendor"), d = read_trimmed(dev.path() / "device");
      if (v && d && v->size() > 2 && d->size() > 2) pci.push_back(v->substr(2) + ":" + d->substr(2));
    }
    if (!pci.empty()) inv["pci"] = pci;
  }
  return inv;
}

std::string device_secret(const fs::path& state_dir) {
  fs::path file = state_dir / "credential";
  std::error_code ec;
  if (fs::exists(file, ec)) {
    std::string s = util::trim(util::read_file(file));
    if (s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string::npos) return s;
    throw Error(ErrorKind::integrity, "device credential " + file.string() + " is damaged");
  }
  util::make_dirs(state_dir);
  std::string secret = util::random_hex(32);
  util::AtomicFile f(file, 0600);
  f.write(secret + "\n");
  f.commit();
  return secret;
}

void make_state_private(const fs::path& state_dir) {
  util::make_dirs(state_dir);
  const std::string where = "state directory " + state_dir.string();
  // Checked and changed through one descriptor opened without following a link: what
  // is checked is what is changed (no path looked up twice).
  util::Fd dirfd(::open(state_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  struct stat link;
  if (!dirfd && (errno == ELOOP || errno == ENOTDIR))  // (a link with O_DIRECTORY is ENOTDIR)
    throw Error(ErrorKind::usage, where + (::lstat(state_dir.c_str(), &link) == 0 && S_ISLNK(link.st_mode)
                                               ? " is a symbolic link; give the directory itself"
                                               : " is not a directory"));
  if (!dirfd) throw_errno(errno == EACCES ? ErrorKind::permission : ErrorKind::failed, "open " + state_dir.string());
  struct stat dir;
  if (::fstat(dirfd.get(), &dir) != 0) throw_errno(ErrorKind::failed, "stat " + state_dir.string());
  // What it is given is what it makes private: never a directory a link leads to (one
  // planted in /tmp), another user's, or one holding files of its own (--state /etc).
  // Never chmod a shared directory (--state /tmp): refuse it, others could read or plant files there.
  if ((dir.st_mode & (S_ISVTX | S_IWOTH)) != 0)
    throw Error(ErrorKind::usage, where + " is shared (world-writable or sticky); give a private one");
  if (dir.st_uid != ::geteuid())
    throw Error(ErrorKind::usage, where + " is owned by uid " + std::to_string(dir.st_uid) + ", not by this user (uid " +
                                      std::to_string(::geteuid()) + "); give one of this user's");
  // The endpoint's own files, the only ones it makes private (whatever else is there).
  static constexpr const char* k_state_files[] = {
      "credential",   "files.cache",   "trees.db",       "trees.db-wal",       "trees.db-shm", "sync.lock",
      "apply.journal", "hooks.pending", "migration.json", "old-roots.json", "stream-status.json", "stream.json"};
  std::error_code empty_ec;
  if (!fs::is_empty(state_dir, empty_ec) && !empty_ec) {
    bool ours = false;
    for (const char* name : {"credential", "files.cache", "trees.db", "sync.lock"})
      ours = ours || ::faccessat(dirfd.get(), name, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
    if (!ours)
      throw Error(ErrorKind::usage, where + " holds other files and no endpoint state; give a new or empty directory");
  }
  auto kind = [] { return errno == EROFS || errno == EPERM ? ErrorKind::permission : ErrorKind::failed; };
  if (::fchmod(dirfd.get(), 0700) != 0) throw_errno(kind(), "chmod " + state_dir.string());
  for (const char* name : k_state_files) {
    struct stat st;
    if (::fstatat(dirfd.get(), name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077) == 0 ||
        st.st_uid != ::geteuid())
      continue;
    if (::fchmodat(dirfd.get(), name, st.st_mode & 0700, AT_SYMLINK_NOFOLLOW) != 0)
      throw_errno(kind(), "chmod " + (state_dir / name).string());
  }
}

}  // namespace mirage::endpoint
