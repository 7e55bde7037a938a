#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "libmirage/util/fd.hpp"
#include "libmirage/util/xattr.hpp"
#include "tests/unit/check_error.hpp"

using namespace mirage;
namespace fs = std::filesystem;

namespace {

using Xattrs = std::vector<std::pair<std::string, std::string>>;

/// What the kernel says through a path (llistxattr), to compare with.
Xattrs reference(const fs::path& p) {
  Xattrs out;
  char names[4096];
  ssize_t n = ::llistxattr(p.c_str(), names, sizeof names);
  for (ssize_t pos = 0; n > 0 && pos < n; pos += static_cast<ssize_t>(std::strlen(names + pos)) + 1) {
    char value[4096];
    ssize_t m = ::lgetxattr(p.c_str(), names + pos, value, sizeof value);
    if (m >= 0) out.emplace_back(names + pos, std::string(value, static_cast<size_t>(m)));
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_SUITE_BEGIN("util::list_xattrs");

TEST_CASE("lists every kind of entry the same way, with or without listxattrat") {
  std::string tmpl = (fs::temp_directory_path() / "mirage-xattr-XXXXXX").string();
  fs::path dir = ::mkdtemp(tmpl.data());
  std::ofstream(dir / "file") << "x";
  fs::create_directory(dir / "sub");
  fs::create_symlink("file", dir / "link");
  REQUIRE(::mkfifo((dir / "fifo").c_str(), 0644) == 0);
  std::ofstream(dir / "locked") << "y";
  bool have_user = ::lsetxattr((dir / "file").c_str(), "user.b", "2", 1, 0) == 0;
  if (have_user) {
    ::lsetxattr((dir / "file").c_str(), "user.a", "one", 3, 0);
    ::lsetxattr((dir / "sub").c_str(), "user.d", "", 0, 0);
    ::lsetxattr((dir / "locked").c_str(), "user.l", "z", 1, 0);
  }
  // trusted.* may go on a symlink (root only); user.* may not.
  ::lsetxattr((dir / "link").c_str(), "trusted.t", "s", 1, 0);
  ::chmod((dir / "locked").c_str(), 0);
  util::Fd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  REQUIRE(dfd);
  for (bool off : {false, true}) {
    CAPTURE(off);
    util::disable_xattrat_for_tests(off);
    for (const char* name : {"file", "sub", "link", "fifo", "locked"}) {
      CAPTURE(name);
      struct stat st;
      REQUIRE(::fstatat(dfd.get(), name, &st, AT_SYMLINK_NOFOLLOW) == 0);
      CHECK(util::list_xattrs(dfd.get(), name, st.st_mode) == reference(dir / name));
      CHECK(util::list_xattrs(dfd.get(), name) == reference(dir / name));  // mode unknown
    }
    CHECK(util::list_xattrs(dfd.get(), ".") == reference(dir));
    CHECK_ERROR_KIND(util::list_xattrs(dfd.get(), "gone"), ErrorKind::not_found);
    CHECK_ERROR_KIND(util::list_xattrs(dfd.get(), "gone", S_IFREG), ErrorKind::not_found);
  }
  util::disable_xattrat_for_tests(false);
  if (have_user) {
    Xattrs want = {{"user.a", "one"}, {"user.b", "2"}};
    CHECK(util::list_xattrs(dfd.get(), "file") == want);
  }
  fs::remove_all(dir);
}

TEST_SUITE_END();
