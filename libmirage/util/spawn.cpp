#include "libmirage/util/spawn.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "libmirage/util/error.hpp"

extern char** environ;

namespace mirage::util {

namespace {

/// Makes `fd` the child's `target` (its close-on-exec flag cleared even when equal).
/// Async-signal-safe.
bool move_to(int fd, int target) {
  if (fd == target) return ::fcntl(fd, F_SETFD, 0) == 0;
  return ::dup2(fd, target) == target;
}

/// Reports errno to the parent on the error pipe and exits 127. Async-signal-safe.
[[noreturn]] void child_fail(int error_fd) {
  int err = errno;
  ssize_t ignored = ::write(error_fd, &err, sizeof err);
  (void)ignored;
  ::_exit(127);
}

}  // namespace

Child::Child(Child&& other) noexcept
    : in(std::move(other.in)),
      out(std::move(other.out)),
      err(std::move(other.err)),
      m_pid(std::exchange(other.m_pid, -1)),
      m_exec_error(other.m_exec_error),
      m_status(other.m_status) {}

Child& Child::operator=(Child&& other) noexcept {
  if (this != &other) {
    if (m_pid > 0) wait();
    in = std::move(other.in);
    out = std::move(other.out);
    err = std::move(other.err);
    m_pid = std::exchange(other.m_pid, -1);
    m_exec_error = other.m_exec_error;
    m_status = other.m_status;
  }
  return *this;
}

Child::~Child() {
  if (m_pid > 0 && !m_status) {
    in = Fd();
    out = Fd();
    err = Fd();
    wait();
  }
}

int Child::wait() {
  if (m_status) return *m_status;
  if (m_pid <= 0) return -1;
  int status = 0;
  while (::waitpid(m_pid, &status, 0) < 0) {
    if (errno != EINTR) {
      m_status = -1;
      return -1;
    }
  }
  m_status = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
  return *m_status;
}

Child spawn(const SpawnOptions& opts) {
  if (opts.argv.empty()) throw Error(ErrorKind::failed, "spawn: no program given");
  const std::string& program = opts.argv[0];
  // Everything the child uses, made here: it may not allocate after fork.
  std::vector<char*> argv;
  for (const auto& a : opts.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    std::string_view kv(*e);
    bool replaced = false;
    for (const auto& [k, v] : opts.env)
      if (kv.size() > k.size() && kv.substr(0, k.size()) == k && kv[k.size()] == '=') replaced = true;
    if (!replaced) env_strings.emplace_back(kv);
  }
  for (const auto& [k, v] : opts.env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string root = opts.chroot ? opts.chroot->string() : std::string();

  int in_pipe[2] = {-1, -1}, out_pipe[2] = {-1, -1}, stderr_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
  auto close_all = [&] {
    for (int* p : {in_pipe, out_pipe, stderr_pipe, err_pipe})
      for (int i : {0, 1})
        if (p[i] >= 0) ::close(p[i]);
  };
  if ((opts.in == SpawnOptions::Stream::pipe && ::pipe2(in_pipe, O_CLOEXEC) != 0) ||
      (opts.out == SpawnOptions::Stream::pipe && ::pipe2(out_pipe, O_CLOEXEC) != 0) ||
      (opts.err == SpawnOptions::Stream::pipe && ::pipe2(stderr_pipe, O_CLOEXEC) != 0) || ::pipe2(err_pipe, O_CLOEXEC) != 0) {
    int err = errno;
    close_all();
    errno = err;
    throw_errno(ErrorKind::failed, "start " + program + ": create pipes");
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    int err = errno;
    close_all();
    errno = err;
    throw_errno(ErrorKind::failed, "start " + program + ": fork");
  }
  if (pid == 0) {
    // The child: async-signal-safe calls only.
    if (opts.in == SpawnOptions::Stream::pipe && !move_to(in_pipe[0], 0)) child_fail(err_pipe[1]);
    if (opts.out == SpawnOptions::Stream::pipe && !move_to(out_pipe[1], 1)) child_fail(err_pipe[1]);
    if (opts.out == SpawnOptions::Stream::to_stderr && ::dup2(2, 1) != 1) child_fail(err_pipe[1]);
    if (opts.err == SpawnOptions::Stream::pipe && !move_to(stderr_pipe[1], 2)) child_fail(err_pipe[1]);
    if (!root.empty() && (::chroot(root.c_str()) != 0 || ::chdir("/") != 0)) child_fail(err_pipe[1]);
    ::execvpe(argv[0], argv.data(), envp.data());
    child_fail(err_pipe[1]);
  }
  Child child;
  child.m_pid = pid;
  ::close(err_pipe[1]);
  err_pipe[1] = -1;
  if (in_pipe[0] >= 0) ::close(in_pipe[0]);
  if (out_pipe[1] >= 0) ::close(out_pipe[1]);
  if (stderr_pipe[1] >= 0) ::close(stderr_pipe[1]);
  child.in = Fd(in_pipe[1]);
  child.out = Fd(out_pipe[0]);
  child.err = Fd(stderr_pipe[0]);
  // The error pipe closes on a successful exec; else it carries the errno.
  int err = 0;
  ssize_t n;
  while ((n = ::read(err_pipe[0], &err, sizeof err)) < 0 && errno == EINTR) {
  }
  ::close(err_pipe[0]);
  if (n == static_cast<ssize_t>(sizeof err)) child.m_exec_error = err;
  return child;
}

}  // namespace mirage::util
