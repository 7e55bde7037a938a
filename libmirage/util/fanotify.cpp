#include "libmirage/util/fanotify.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "libmirage/util/error.hpp"

// Debian 12's headers predate pre-content events (uapi of Linux 6.14).
#ifndef FAN_PRE_ACCESS
#define FAN_PRE_ACCESS 0x00100000
#endif
#ifndef FAN_EVENT_INFO_TYPE_RANGE
#define FAN_EVENT_INFO_TYPE_RANGE 6
#endif
#ifndef FAN_DENY_ERRNO
#define FAN_DENY_ERRNO(err) (FAN_DENY | ((static_cast<uint32_t>(err) & 0xff) << 24))
#endif

namespace mirage::util {

namespace {
// struct fanotify_event_info_range of Linux 6.14 (not in Debian 12's headers).
struct RangeInfo {
  uint8_t info_type;
  uint8_t pad;
  uint16_t len;
  uint32_t pad2;
  uint64_t offset;
  uint64_t count;
};
static_assert(sizeof(RangeInfo) == 24);

/// The range info record among the info records of one event (`info`, `size` bytes).
void read_range(const char* info, size_t size, PreContentGroup::Event& ev) {
  for (size_t at = 0; at + 4 <= size;) {
    uint8_t type = static_cast<uint8_t>(info[at]);
    uint16_t len;
    std::memcpy(&len, info + at + 2, sizeof len);
    if (len < 4 || at + len > size) return;
    if (type == FAN_EVENT_INFO_TYPE_RANGE && len >= sizeof(RangeInfo)) {
      RangeInfo r;
      std::memcpy(&r, info + at, sizeof r);
      ev.ranged = true;
      ev.offset = r.offset;
      ev.count = r.count;
    }
    at += len;
  }
}
}  // namespace

std::optional<PreContentGroup> PreContentGroup::open(std::string* why) {
  int fd = ::fanotify_init(FAN_CLASS_PRE_CONTENT | FAN_CLOEXEC, O_RDWR | O_LARGEFILE);
  if (fd < 0) {
    if (why)
      *why = errno == EPERM ? "fanotify needs CAP_SYS_ADMIN (run as root)"
                            : std::string("fanotify pre-content events are unavailable: ") + std::strerror(errno);
    return std::nullopt;
  }
  return PreContentGroup(Fd(fd));
}

bool PreContentGroup::mark(int dirfd, const std::string& name, std::string* why) {
  if (::fanotify_mark(m_fd.get(), FAN_MARK_ADD | FAN_MARK_DONT_FOLLOW, FAN_PRE_ACCESS, dirfd, name.c_str()) == 0)
    return true;
  if (why)
    *why = errno == EINVAL ? "this kernel or file system gives no fanotify pre-content events (Linux 6.14 or later on ext4, xfs or btrfs does)"
                           : "fanotify mark: " + std::string(std::strerror(errno));
  return false;
}

void PreContentGroup::unmark(int fd) { ::fanotify_mark(m_fd.get(), FAN_MARK_REMOVE, FAN_PRE_ACCESS, fd, nullptr); }

std::optional<PreContentGroup::Event> PreContentGroup::next(int stop_fd) {
  for (;;) {
    if (m_at < m_buffer.size()) {
      fanotify_event_metadata meta;
      if (m_buffer.size() - m_at < sizeof meta) {
        m_at = m_buffer.size();
        continue;
      }
      std::memcpy(&meta, m_buffer.data() + m_at, sizeof meta);
      size_t start = m_at;
      if (meta.event_len < sizeof meta || meta.event_len > m_buffer.size() - m_at) {
        m_at = m_buffer.size();  // malformed: the rest of this read cannot be parsed
        continue;
      }
      m_at += meta.event_len;
      if (meta.vers != FANOTIFY_METADATA_VERSION || meta.fd < 0) continue;
      Event ev;
      if (meta.metadata_len < meta.event_len)
        read_range(m_buffer.data() + start + meta.metadata_len, meta.event_len - meta.metadata_len, ev);
      ev.file = Fd(meta.fd);
      ev.pid = meta.pid;
      struct stat st;
      if (::fstat(meta.fd, &st) == 0) {
        ev.dev = st.st_dev;
        ev.ino = st.st_ino;
      }
      return ev;
    }
    pollfd fds[2] = {{m_fd.get(), POLLIN, 0}, {stop_fd, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      throw_errno("wait for fanotify events");
    }
    if (fds[1].revents) return std::nullopt;
    m_buffer.resize(64 * 1024);
    ssize_t n = ::read(m_fd.get(), m_buffer.data(), m_buffer.size());
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) n = 0;
      else throw_errno("read fanotify events");
    }
    m_buffer.resize(static_cast<size_t>(n));
    m_at = 0;
  }
}

void PreContentGroup::answer(const Event& event, bool allow) {
  fanotify_response r{};
  r.fd = event.file.get();
  r.response = allow ? FAN_ALLOW : FAN_DENY_ERRNO(EIO);
  if (::write(m_fd.get(), &r, sizeof r) != sizeof r && allow) {
    r.response = FAN_ALLOW;  // never leave a reader waiting
    (void)!::write(m_fd.get(), &r, sizeof r);
  }
}

}  // namespace mirage::util
