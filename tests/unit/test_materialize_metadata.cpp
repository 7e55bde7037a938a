#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <fstream>

#include "libmirage/materialize/metadata.hpp"
#include "libmirage/util/error.hpp"
#include "libmirage/util/fd.hpp"
#include "tests/unit/check_error.hpp"
#include "tests/unit/temp_dir.hpp"

using namespace mirage;

namespace {
mode_t mode_of(const std::filesystem::path& p) {
  struct stat st {};
  REQUIRE(::lstat(p.c_str(), &st) == 0);
  return st.st_mode;
}

/// A test's directory, open.
struct OpenDir {
  test::TempDir dir;
  util::Fd fd{::open(dir.path().c_str(), O_DIRECTORY | O_RDONLY | O_CLOEXEC)};
  const std::filesystem::path& path() const { return dir.path(); }
};

/// The snapshot's entry of a fifo "pipe", mode 0666.
tree::Entry fifo_entry() {
  tree::Entry fifo;
  fifo.name = "pipe";
  fifo.kind = tree::Kind::fifo;
  fifo.mode = 0666;
  fifo.mtime_ns = 1'000'000'000;
  return fifo;
}

const materialize::Warn no_warn = [](std::string) {};
}  // namespace

TEST_SUITE_BEGIN("materialize::metadata");

TEST_CASE("metadata goes on what was made: a symlink swapped in under the name is refused, its target untouched") {
  OpenDir dir;
  const util::Fd& dirfd = dir.fd;
  std::ofstream(dir.path() / "victim") << "secret";
  REQUIRE(::chmod((dir.path() / "victim").c_str(), 0600) == 0);
  tree::Entry fifo = fifo_entry();
  const materialize::Warn& warn = no_warn;
  SUBCASE("the node as made gets its mode and times") {
    materialize::make_node(dirfd.get(), "tmp", fifo, "/pipe");
    materialize::set_metadata(dirfd.get(), "tmp", fifo, "/pipe", warn);
    CHECK(S_ISFIFO(mode_of(dir.path() / "tmp")));
    CHECK((mode_of(dir.path() / "tmp") & 07777) == 0666);
  }
  SUBCASE("another user renames a symlink over it before its metadata: refused, the target keeps its mode") {
    materialize::make_node(dirfd.get(), "tmp", fifo, "/pipe");
    REQUIRE(::symlinkat((dir.path() / "victim").c_str(), dirfd.get(), "link") == 0);
    REQUIRE(::renameat(dirfd.get(), "link", dirfd.get(), "tmp") == 0);
    CHECK_ERROR_KIND(materialize::set_metadata(dirfd.get(), "tmp", fifo, "/pipe", warn), ErrorKind::precondition);
    CHECK((mode_of(dir.path() / "victim") & 07777) == 0600);
  }
  SUBCASE("a symlink entry gets its times, never its target's") {
    tree::Entry link = fifo;
    link.kind = tree::Kind::symlink;
    link.target = (dir.path() / "victim").string();
    materialize::make_node(dirfd.get(), "ln", link, "/ln");
    materialize::set_metadata(dirfd.get(), "ln", link, "/ln", warn);
    struct stat st {};
    REQUIRE(::lstat((dir.path() / "ln").c_str(), &st) == 0);
    CHECK(st.st_mtim.tv_sec == 1);
    CHECK((mode_of(dir.path() / "victim") & 07777) == 0600);
  }
}

TEST_CASE("a file's xattrs go through its fd: a file another user renames over its name gets none") {
  OpenDir dir;
  const util::Fd& dirfd = dir.fd;
  util::Fd fd(::openat(dirfd.get(), "tmp", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  REQUIRE(fd);
  std::ofstream(dir.path() / "theirs") << "their program";
  REQUIRE(::renameat(dirfd.get(), "theirs", dirfd.get(), "tmp") == 0);  // the swap, after the write
  tree::Entry file;
  file.name = "tool";
  file.kind = tree::Kind::file;
  file.mode = 0755;
  file.xattrs.push_back({"user.mirage-test", "granted"});
  materialize::set_metadata_fd(fd.get(), file, "/tool", no_warn);
  char value[16];
  CHECK(::fgetxattr(fd.get(), "user.mirage-test", value, sizeof value) == 7);
  CHECK(::getxattr((dir.path() / "tmp").c_str(), "user.mirage-test", value, sizeof value) < 0);
}

TEST_CASE("a node just made has one name and this process's uid: another's node linked in under its name is refused") {
  OpenDir dir;
  const util::Fd& dirfd = dir.fd;
  tree::Entry fifo = fifo_entry();
  const materialize::Warn& warn = no_warn;
  materialize::make_node(dirfd.get(), "tmp", fifo, "/pipe");
  REQUIRE(::mkfifoat(dirfd.get(), "victim", 0600) == 0);
  REQUIRE(::linkat(dirfd.get(), "victim", dirfd.get(), "link", 0) == 0);
  REQUIRE(::renameat(dirfd.get(), "link", dirfd.get(), "tmp") == 0);
  CHECK_ERROR_KIND(materialize::set_metadata(dirfd.get(), "tmp", fifo, "/pipe", warn, true), ErrorKind::precondition);
  CHECK((mode_of(dir.path() / "victim") & 07777) == 0600);
  // Metadata for an entry that was there already (an apply's metadata-only change) may
  // well have two names.
  materialize::set_metadata(dirfd.get(), "tmp", fifo, "/pipe", warn);
  CHECK((mode_of(dir.path() / "victim") & 07777) == 0666);
}

TEST_SUITE_END();
