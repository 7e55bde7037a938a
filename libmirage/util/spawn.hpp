#pragma once
// The one way libmirage starts a process: argv (no shell), optional pipes for its
// stdin and stdout, extra environment variables, an optional chroot (post-layer
// hooks), and a wait that gives its status. Everything the child needs is prepared
// before fork; the child only dup2s, chroots and execs (safe in a threaded process).
#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "libmirage/util/fd.hpp"

namespace mirage::util {

struct SpawnOptions {
  /// argv[0] is the program: looked up on PATH when it has no '/'.
  std::vector<std::string> argv;
  /// Set in the child's environment (the rest is inherited).
  std::vector<std::pair<std::string, std::string>> env;
  /// chroot here and chdir("/") before the exec (argv[0] is then a path inside it).
  std::optional<std::filesystem::path> chroot;
  enum class Stream { inherit, pipe, to_stderr };
  Stream in = Stream::inherit;   ///< pipe: Child::in writes to the child's stdin
  Stream out = Stream::inherit;  ///< pipe: Child::out reads its stdout; to_stderr: stdout goes to our stderr
  Stream err = Stream::inherit;  ///< pipe: Child::err reads its stderr (to_stderr: as inherit)
};

/// A started process. Destroying one that was not waited for closes its pipes and
/// waits (a child is never left a zombie).
class Child {
 public:
  Child() = default;
  Child(Child&& other) noexcept;
  Child& operator=(Child&& other) noexcept;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child();

  pid_t pid() const { return m_pid; }
  /// 0 when the exec succeeded, else the errno of the chroot or exec that failed
  /// (the child then exited 127, as a shell's child does).
  int exec_error() const { return m_exec_error; }
  /// Waits for the child (again after EINTR); returns its exit code, or 128 + the
  /// signal that ended it. A second call returns the same.
  int wait();

  Fd in;   ///< the write end of its stdin with Stream::pipe
  Fd out;  ///< the read end of its stdout with Stream::pipe
  Fd err;  ///< the read end of its stderr with Stream::pipe

 private:
  friend Child spawn(const SpawnOptions& options);
  pid_t m_pid = -1;
  int m_exec_error = 0;
  std::optional<int> m_status;
};

/// Starts `options.argv`. Throws Error(failed) when no process could be made (pipes,
/// fork); a program that cannot be run gives a Child with exec_error() set.
Child spawn(const SpawnOptions& options);

}  // namespace mirage::util
