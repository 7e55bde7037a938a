#include <doctest/doctest.h>

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "libmirage/endpoint/identity.hpp"
#include "libmirage/util/error.hpp"

using namespace mirage;
namespace fs = std::filesystem;

namespace {

/// A fresh directory under the system temp dir, removed at the end of the test.
struct TempRoot {
  fs::path dir;
  TempRoot() {
    std::string tmpl = (fs::temp_directory_path() / "mirage-client-XXXXXX").string();
    dir = ::mkdtemp(tmpl.data());
    fs::create_directories(dir / "root/etc");
  }
  ~TempRoot() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  fs::path root() const { return dir / "root"; }
  void write(const fs::path& p, const std::string& text) const { std::ofstream(p) << text; }
};

ErrorKind kind_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.kind();
  }
  FAIL("no error thrown");
  return ErrorKind::failed;
}

}  // namespace

TEST_SUITE_BEGIN("client identity files");

TEST_CASE("a hostname symlinked outside the root is resolved inside it, never read outside") {
  TempRoot t;
  t.write(t.dir / "secret", "outside-secret\n");
  SUBCASE("absolute link") { fs::create_symlink(t.dir / "secret", t.root() / "etc/hostname"); }
  SUBCASE("relative link climbing out") { fs::create_symlink("../../../../../../../" + (t.dir / "secret").string(), t.root() / "etc/hostname"); }
  std::string host = "unset";
  endpoint::inventory(t.root(), &host);
  CHECK(host.find("outside-secret") == std::string::npos);
  CHECK(host.empty());
}

TEST_CASE("a link that stays inside the root is followed") {
  TempRoot t;
  fs::create_directories(t.root() / "usr/lib");
  t.write(t.root() / "usr/lib/os-release", "ID=testos\nVERSION_ID=3\n");
  fs::create_symlink("../usr/lib/os-release", t.root() / "etc/os-release");
  t.write(t.root() / "inner", "inner-host\n");
  fs::create_symlink("/inner", t.root() / "etc/hostname");
  std::string host;
  auto inv = endpoint::inventory(t.root(), &host);
  CHECK(host == "inner-host");
  CHECK(inv.value("os_id", "") == "testos");
  // The free space of the root's filesystem, for a migration's preflight.
  REQUIRE(inv.contains("root_free_bytes"));
  CHECK(inv["root_free_bytes"].get<uint64_t>() > 0);
}

TEST_CASE("FIFOs, devices and oversized files are skipped without blocking") {
  TempRoot t;
  SUBCASE("fifo") { REQUIRE(::mkfifo((t.root() / "etc/hostname").c_str(), 0644) == 0); }
  SUBCASE("link to /dev/zero inside a root that has one") {
    fs::create_directories(t.root() / "dev");
    fs::create_symlink("/dev/zero", t.root() / "etc/hostname");
    if (::geteuid() == 0) ::mknod((t.root() / "dev/zero").c_str(), S_IFCHR | 0666, makedev(1, 5));
  }
  SUBCASE("oversized") { t.write(t.root() / "etc/hostname", std::string(5000, 'a')); }
  std::string host = "unset";
  endpoint::inventory(t.root(), &host);
  CHECK(host.empty());
}

TEST_CASE("the machine-id becomes the device id only when it is 32 hex digits") {
  TempRoot t;
  CHECK_FALSE(endpoint::detect_device_id(t.root()).has_value());
  t.write(t.root() / "etc/machine-id", "0123456789ABCDEF0123456789abcdef\n");
  CHECK(endpoint::detect_device_id(t.root()) == "0123456789abcdef0123456789abcdef");
  t.write(t.root() / "etc/machine-id", "../../../../tmp/x\n");
  CHECK(kind_of([&] { endpoint::detect_device_id(t.root()); }) == ErrorKind::usage);
  fs::remove(t.root() / "etc/machine-id");
  REQUIRE(::mkfifo((t.root() / "etc/machine-id").c_str(), 0644) == 0);
  CHECK_FALSE(endpoint::detect_device_id(t.root()).has_value());
}

TEST_CASE("device ids that would name another directory are refused") {
  for (const char* bad : {"", ".", "..", "a/b", "../x", "with space"})
    CHECK(kind_of([&] { endpoint::check_device_id(bad); }) == ErrorKind::usage);
  for (const char* good : {"dev-a", "ep1", "0123456789abcdef0123456789abcdef", "host.example:1", "..x"})
    CHECK_NOTHROW(endpoint::check_device_id(good));
}

TEST_CASE("the state directory is made private, files included") {
  TempRoot t;
  fs::path state = t.dir / "state";
  fs::create_directories(state);
  ::chmod(state.c_str(), 0755);
  t.write(state / "trees.db", "x");
  ::chmod((state / "trees.db").c_str(), 0644);
  endpoint::make_state_private(state);
  CHECK((fs::status(state).permissions() & fs::perms::all) == fs::perms::owner_all);
  CHECK((fs::status(state / "trees.db").permissions() & fs::perms::all) == (fs::perms::owner_read | fs::perms::owner_write));
}

TEST_CASE("a shared directory is refused as the state directory, and left as it is") {
  TempRoot t;
  fs::path shared = t.dir / "shared";
  fs::create_directories(shared);
  ::chmod(shared.c_str(), 01777);
  CHECK(kind_of([&] { endpoint::make_state_private(shared); }) == ErrorKind::usage);
  CHECK((fs::status(shared).permissions() & fs::perms::mask) == (fs::perms::all | fs::perms::sticky_bit));
}

TEST_CASE("a link, another user's directory or one holding other files is refused as the state directory, and left as it is") {
  TempRoot t;
  // --state /etc, by mistake: nothing there is made private.
  fs::path etc = t.dir / "etc";
  fs::create_directories(etc);
  t.write(etc / "passwd", "root:x:0:0::/root:/bin/sh\n");
  ::chmod(etc.c_str(), 0755);
  ::chmod((etc / "passwd").c_str(), 0644);
  CHECK(kind_of([&] { endpoint::make_state_private(etc); }) == ErrorKind::usage);
  CHECK((fs::status(etc).permissions() & fs::perms::all) == fs::perms(0755));
  CHECK((fs::status(etc / "passwd").permissions() & fs::perms::all) == fs::perms(0644));
  // A link to it (one planted in /tmp): refused though what it leads to would be empty.
  fs::path empty = t.dir / "empty", link = t.dir / "link";
  fs::create_directories(empty);
  ::chmod(empty.c_str(), 0755);
  fs::create_directory_symlink(empty, link);
  CHECK(kind_of([&] { endpoint::make_state_private(link); }) == ErrorKind::usage);
  CHECK((fs::status(empty).permissions() & fs::perms::all) == fs::perms(0755));
  // Another user's (root can tell: it may chown).
  if (::geteuid() == 0) {
    fs::path theirs = t.dir / "theirs";
    fs::create_directories(theirs);
    REQUIRE(::chown(theirs.c_str(), 65534, 65534) == 0);
    CHECK(kind_of([&] { endpoint::make_state_private(theirs); }) == ErrorKind::usage);
  }
  // An empty directory and one with endpoint state are taken.
  endpoint::make_state_private(empty);
  CHECK((fs::status(empty).permissions() & fs::perms::all) == fs::perms::owner_all);
  // One holding a state file beside others (planted, or --state $HOME by mistake): only
  // the endpoint's own files are made private.
  fs::path mixed = t.dir / "mixed";
  fs::create_directories(mixed);
  t.write(mixed / "notes.txt", "mine");
  t.write(mixed / "trees.db", "x");
  ::chmod((mixed / "notes.txt").c_str(), 0644);
  ::chmod((mixed / "trees.db").c_str(), 0644);
  endpoint::make_state_private(mixed);
  CHECK((fs::status(mixed / "notes.txt").permissions() & fs::perms::all) == fs::perms(0644));
  CHECK((fs::status(mixed / "trees.db").permissions() & fs::perms::all) == fs::perms(0600));
}

TEST_SUITE_END();
