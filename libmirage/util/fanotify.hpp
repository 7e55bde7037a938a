#pragma once
// fanotify pre-content events (Linux >= 6.14; ext4, xfs, btrfs): a read of a marked file
// waits until the listener answers, so a file can be filled in before its reader sees it.
// The one user of the fanotify API. A listener's own writes also raise events; they are
// answered at once (an event from this process is never waited on).
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include "libmirage/util/fd.hpp"

namespace mirage::util {

class PreContentGroup {
 public:
  /// A group, or nullopt with `why` saying what this kernel or process lacks (no
  /// pre-content events before 6.14, or CAP_SYS_ADMIN missing).
  static std::optional<PreContentGroup> open(std::string* why);

  /// Marks the file `name` in directory `dirfd` (not following a symlink). False with
  /// `why` when its file system does not give pre-content events.
  bool mark(int dirfd, const std::string& name, std::string* why);
  /// Removes the mark of the file open as `fd` (a no-op when it has none).
  void unmark(int fd);

  struct Event {
    Fd file;        ///< the file being read (its reads through this fd raise no event)
    pid_t pid = 0;  ///< who reads
    dev_t dev = 0;
    ino_t ino = 0;
    /// The bytes the access touches (FAN_EVENT_INFO_TYPE_RANGE, which a read, write,
    /// splice or mmap reports); `ranged` false when the kernel gave none (a truncate
    /// gives a count of 0): the access may touch the whole file.
    bool ranged = false;
    uint64_t offset = 0, count = 0;
  };
  /// The next event; nullopt when `stop_fd` (an eventfd or pipe) became readable.
  std::optional<Event> next(int stop_fd);
  /// Lets the reader of `event` go on (allow) or fails its read with EIO.
  void answer(const Event& event, bool allow);

 private:
  explicit PreContentGroup(Fd fd) : m_fd(std::move(fd)) {}
  Fd m_fd;
  // Events read together and not handed out yet (one read() returns several).
  std::string m_buffer;
  size_t m_at = 0;
};

}  // namespace mirage::util
