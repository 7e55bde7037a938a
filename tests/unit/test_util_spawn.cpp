#include <doctest/doctest.h>

#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <string>

#include "libmirage/util/fd.hpp"
#include "libmirage/util/spawn.hpp"

using namespace mirage;
namespace fs = std::filesystem;

namespace {

std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  for (int i = 0; i < 10000; ++i) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

}  // namespace

TEST_SUITE_BEGIN("util::spawn");

TEST_CASE("pipes carry stdin and stdout, and wait gives the exit code") {
  util::SpawnOptions so;
  so.argv = {"sh", "-c", "tr a-z A-Z; exit 3"};
  so.in = util::SpawnOptions::Stream::pipe;
  so.out = util::SpawnOptions::Stream::pipe;
  auto child = util::spawn(so);
  CHECK(child.exec_error() == 0);
  std::string text = "hello\n";
  REQUIRE(::write(child.in.get(), text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  child.in = util::Fd();
  CHECK(read_all(child.out.get()) == "HELLO\n");
  CHECK(child.wait() == 3);
  CHECK(child.wait() == 3);  // the same again
}

TEST_CASE("environment variables are set on top of the inherited ones") {
  ::setenv("MIRAGE_SPAWN_TEST_KEPT", "kept", 1);
  ::setenv("MIRAGE_SPAWN_TEST_SET", "old", 1);
  util::SpawnOptions so;
  so.argv = {"/bin/sh", "-c", "printf '%s %s' \"$MIRAGE_SPAWN_TEST_KEPT\" \"$MIRAGE_SPAWN_TEST_SET\""};
  so.env = {{"MIRAGE_SPAWN_TEST_SET", "new"}};
  so.out = util::SpawnOptions::Stream::pipe;
  auto child = util::spawn(so);
  CHECK(read_all(child.out.get()) == "kept new");
  CHECK(child.wait() == 0);
  ::unsetenv("MIRAGE_SPAWN_TEST_KEPT");
  ::unsetenv("MIRAGE_SPAWN_TEST_SET");
}

TEST_CASE("a signal gives 128 + its number") {
  util::SpawnOptions so;
  so.argv = {"sh", "-c", "kill -9 $$"};
  CHECK(util::spawn(so).wait() == 128 + 9);
}

TEST_CASE("a program that cannot be run: exec_error and exit 127") {
  util::SpawnOptions so;
  so.argv = {"/nonexistent/mirage-no-such-program"};
  auto child = util::spawn(so);
  CHECK(child.exec_error() == ENOENT);
  CHECK(child.wait() == 127);
  so.argv = {"mirage-no-such-program-on-path"};
  CHECK(util::spawn(so).exec_error() == ENOENT);
}

TEST_CASE("a chroot that fails is reported like a failed exec") {
  util::SpawnOptions so;
  so.argv = {"/bin/true"};
  so.chroot = "/nonexistent/mirage-no-such-root";
  auto child = util::spawn(so);
  CHECK(child.exec_error() != 0);
  CHECK(child.wait() == 127);
}

TEST_CASE("stdout can go to stderr") {
  // Hooks write their output to stderr: stdout carries data only.
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  util::Fd rd(fds[0]);
  int saved = ::dup(2);
  ::dup2(fds[1], 2);
  ::close(fds[1]);
  util::SpawnOptions so;
  so.argv = {"sh", "-c", "echo to-stdout"};
  so.out = util::SpawnOptions::Stream::to_stderr;
  int status = util::spawn(so).wait();
  ::dup2(saved, 2);
  ::close(saved);
  CHECK(status == 0);
  CHECK(read_all(rd.get()) == "to-stdout\n");
}

TEST_SUITE_END();
