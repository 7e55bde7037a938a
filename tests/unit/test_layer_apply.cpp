#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>

#include "libmirage/layer/apply.hpp"
#include "libmirage/layer/revert.hpp"
#include "libmirage/materialize/stream.hpp"
#include "libmirage/util/fd.hpp"
#include "tests/unit/memory_source.hpp"

using namespace mirage;
namespace fs = std::filesystem;

TEST_SUITE_BEGIN("layer::apply");

namespace {

tree::Entry dir() {
  tree::Entry e;
  e.kind = tree::Kind::dir;
  e.mode = 0755;
  e.mtime_ns = 1;
  return e;
}

const std::string k_bytes = "the bytes a revert wants back";

/// Reverts ROOT to a snapshot with /home/u/a, the endpoint's own copy of its bytes at
/// `local` (the scan saw a file there; `prepare` puts something else in its place);
/// returns the apply's result, failing the test when the apply waits (10 s).
layer::ApplyResult revert_with_local(const fs::path& root, const std::string& local, testing::MemorySource& source,
                                     const std::function<void()>& prepare) {
  fs::remove_all(root);
  fs::create_directories(root / "home/u");
  auto a = source.file("a", k_bytes);
  a.name.clear();
  layer::Flat s{{"/", dir()}, {"/home", dir()}, {"/home/u", dir()}, {"/home/u/a", a}};
  layer::Flat e{{"/", dir()}, {"/home", dir()}, {"/home/u", dir()}, {local, a}};
  for (auto p = tree::parent_path(local); p != "/home/u"; p = tree::parent_path(p)) s[p] = e[p] = dir();
  s[local] = a;
  auto plan = layer::make_revert_plan(s, e, layer::RevertScope::full, policy::UploadPolicy::defaults());
  REQUIRE(plan.local_bytes == k_bytes.size());
  prepare();
  layer::ApplyOptions ao;
  ao.root = root;
  ao.journal = root.string() + ".journal";
  auto run = std::async(std::launch::async, [&] { return layer::apply(plan, e, source, ao); });
  bool finished = run.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  if (!finished) {  // a writer on the FIFO lets the reader go, so the test ends
    int w = ::open((root / local.substr(1)).c_str(), O_WRONLY | O_NONBLOCK);
    if (w >= 0) ::close(w);
  }
  CHECK(finished);
  auto r = run.get();
  std::ifstream in(root / "home/u/a");
  CHECK(std::string((std::istreambuf_iterator<char>(in)), {}) == k_bytes);
  fs::remove(ao.journal);
  return r;
}

}  // namespace

// The endpoint's own copy of a chunk the plan reuses is read where the scan saw it; by
// then something else may stand there: the read must neither wait on a FIFO nor go
// through a symlink (out of the root, or to a device node: opening one can act), and
// the chunk is fetched instead.
TEST_CASE("a local chunk's file swapped for a FIFO: fetched, not waited on") {
  fs::path root = fs::temp_directory_path() / ("mirage-apply-" + std::to_string(::getpid()));
  testing::MemorySource source;
  auto r = revert_with_local(root, "/home/u/b", source, [&] { REQUIRE(::mkfifo((root / "home/u/b").c_str(), 0644) == 0); });
  CHECK(r.bytes_local == 0);
  CHECK(source.asked > 0);
  fs::remove_all(root);
}

TEST_CASE("a local chunk's file below a directory swapped for a symlink: fetched, the link not followed") {
  fs::path root = fs::temp_directory_path() / ("mirage-apply-" + std::to_string(::getpid()));
  fs::path outside = root.string() + "-outside";
  testing::MemorySource source;
  auto r = revert_with_local(root, "/home/u/d/x", source, [&] {
    fs::create_directories(outside);
    std::ofstream(outside / "x") << k_bytes;
    fs::create_directory_symlink(outside, root / "home/u/d");
  });
  CHECK(r.bytes_local == 0);
  CHECK(source.asked > 0);
  fs::remove_all(root);
  fs::remove_all(outside);
}

// A revert that writes into a directory someone swapped for a symlink (to a directory
// outside) since the scan: refused, and nothing is written outside.
TEST_CASE("a directory the revert writes into swapped for a symlink: refused, nothing written through it") {
  fs::path root = fs::temp_directory_path() / ("mirage-apply-" + std::to_string(::getpid()));
  fs::path outside = root.string() + "-outside";
  fs::remove_all(root);
  fs::create_directories(root / "home/u");
  fs::create_directories(outside);
  testing::MemorySource source;
  auto f = source.file("f", "new bytes");
  f.name.clear();
  layer::Flat e{{"/", dir()}, {"/home", dir()}, {"/home/u", dir()}, {"/home/u/d", dir()}};
  layer::Flat s = e;
  s["/home/u/d/f"] = f;
  auto plan = layer::make_revert_plan(s, e, layer::RevertScope::full, policy::UploadPolicy::defaults());
  REQUIRE(!plan.ops.empty());
  fs::create_directory_symlink(outside, root / "home/u/d");
  layer::ApplyOptions ao;
  ao.root = root;
  ao.journal = root.string() + ".journal";
  CHECK_THROWS(layer::apply(plan, e, source, ao));
  CHECK(fs::is_empty(outside));
  CHECK(fs::is_symlink(root / "home/u/d"));
  fs::remove_all(root);
  fs::remove_all(outside);
  fs::remove(ao.journal);
}

TEST_SUITE_END();

// A streamed revert: the files the caller picks are staged as placeholders (the final
// size as a hole, the metadata, the mark), renamed into place like the rest, fetch
// nothing, and never reach `installed` (the files cache would take the hole as the file).
// A hardlink to one shares its inode; a file not picked is written whole.
TEST_CASE("an apply killed after removing a directory tree is finished by recover from its first step") {
  testing::MemorySource source;
  auto f = source.file("f", "old bytes");
  f.name.clear();
  layer::Flat s{{"/", dir()}, {"/keep", dir()}};
  layer::Flat e{{"/", dir()},          {"/keep", dir()},   {"/old", dir()}, {"/old/a", dir()},
                {"/old/a/b", dir()},   {"/old/a/b/f", f}, {"/old/a/g", f}};
  auto plan = layer::make_revert_plan(s, e, layer::RevertScope::full, policy::UploadPolicy::defaults());
  REQUIRE(plan.ops.size() >= 5);
  fs::path root = fs::temp_directory_path() / ("mirage-apply-crash-" + std::to_string(::getpid()));
  for (size_t crash_at = 1; crash_at <= plan.ops.size(); ++crash_at) {
    INFO("crash before step " << crash_at);
    fs::remove_all(root);
    fs::create_directories(root / "keep");
    fs::create_directories(root / "old/a/b");
    std::ofstream(root / "old/a/b/f") << "old bytes";
    std::ofstream(root / "old/a/g") << "old bytes";
    layer::ApplyOptions ao;
    ao.root = root;
    ao.journal = root.string() + ".journal";
    ao.before_step = [crash_at](size_t i) {
      if (i == crash_at) throw std::runtime_error("killed");
    };
    bool killed = false;
    try {
      layer::apply(plan, e, source, ao);
    } catch (const std::runtime_error&) {
      killed = true;
    }
    if (!killed) continue;  // past the last step
    CHECK_NOTHROW(layer::recover(root, ao.journal));
    CHECK_FALSE(fs::exists(root / "old"));
    CHECK(fs::is_directory(root / "keep"));
    fs::remove(ao.journal);
  }
  fs::remove_all(root);
}

TEST_CASE("a streamed apply stages the picked files as placeholders, fetches none of their bytes") {
  fs::path root = fs::temp_directory_path() / ("mirage-apply-ph-" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root / "home/u");
  fs::create_directories(root / "etc");
  testing::MemorySource source;
  std::string big(300000, 'b');
  auto doc = source.file("doc", big, 5'000'000'000);
  doc.name.clear();
  doc.mode = 0640;
  doc.link_group = "/home/u/doc";
  auto link = doc;
  auto conf = source.file("conf", "minimal set");
  conf.name.clear();
  layer::Flat s{{"/", dir()},         {"/etc", dir()},       {"/home", dir()},
                {"/home/u", dir()},   {"/etc/conf", conf},   {"/home/u/doc", doc},
                {"/home/u/doc2", link}};
  layer::Flat e{{"/", dir()}, {"/etc", dir()}, {"/home", dir()}, {"/home/u", dir()}};
  auto plan = layer::make_revert_plan(s, e, layer::RevertScope::full, policy::UploadPolicy::defaults());
  layer::ApplyOptions ao;
  ao.root = root;
  ao.journal = root.string() + ".journal";
  ao.placeholder = [](const std::string& path, const tree::Entry&) { return path.rfind("/home/", 0) == 0; };
  auto r = layer::apply(plan, e, source, ao);
  CHECK(r.placeholders == std::vector<std::string>{"/home/u/doc"});
  CHECK(source.asked == 1);  // /etc/conf's chunk only
  struct stat st, st2;
  REQUIRE(::stat((root / "home/u/doc").c_str(), &st) == 0);
  REQUIRE(::stat((root / "home/u/doc2").c_str(), &st2) == 0);
  CHECK(st.st_size == 300000);
  CHECK((st.st_mode & 07777) == 0640);
  CHECK(st.st_mtim.tv_sec == 5);
  CHECK(st.st_blocks < 16);  // a hole
  CHECK(st.st_ino == st2.st_ino);
  util::Fd fd(::open((root / "home/u/doc").c_str(), O_RDONLY | O_CLOEXEC));
  CHECK(materialize::is_placeholder(fd.get()));
  std::ifstream in(root / "etc/conf");
  CHECK(std::string((std::istreambuf_iterator<char>(in)), {}) == "minimal set");
  for (const auto& [dir_path, file] : r.installed) CHECK(dir_path != "/home/u");
  CHECK(r.installed.size() == 1);
  CHECK(!fs::exists(ao.journal));
  fs::remove_all(root);
}

// A hardlink group with a name in the minimal set and one outside it (/usr/bin/h and
// /home/u/h, one inode): the group is written whole, whichever name leads it (the
// follower is a link to its first member: a placeholder there would leave the minimal
// set's name a hole until the fill).
TEST_CASE("a streamed apply writes a hardlink group whole when one of its names is in the minimal set") {
  for (const std::string head : {"/home/u/h", "/usr/bin/h"}) {
    CAPTURE(head);
    fs::path root = fs::temp_directory_path() / ("mirage-apply-phl-" + std::to_string(::getpid()));
    fs::remove_all(root);
    fs::create_directories(root / "home/u");
    fs::create_directories(root / "usr/bin");
    testing::MemorySource source;
    std::string big(200000, 'h');
    auto h = source.file("h", big);
    h.name.clear();
    h.link_group = head;
    layer::Flat s{{"/", dir()},         {"/home", dir()},   {"/home/u", dir()}, {"/usr", dir()},
                  {"/usr/bin", dir()},  {"/home/u/h", h},   {"/usr/bin/h", h}};
    layer::Flat e{{"/", dir()}, {"/home", dir()}, {"/home/u", dir()}, {"/usr", dir()}, {"/usr/bin", dir()}};
    auto plan = layer::make_revert_plan(s, e, layer::RevertScope::full, policy::UploadPolicy::defaults());
    layer::ApplyOptions ao;
    ao.root = root;
    ao.journal = root.string() + ".journal";
    ao.placeholder = [](const std::string& path, const tree::Entry&) { return path.rfind("/home/", 0) == 0; };
    auto r = layer::apply(plan, e, source, ao);
    CHECK(r.placeholders.empty());
    struct stat st, st2;
    REQUIRE(::stat((root / "home/u/h").c_str(), &st) == 0);
    REQUIRE(::stat((root / "usr/bin/h").c_str(), &st2) == 0);
    CHECK(st.st_ino == st2.st_ino);
    for (const char* name : {"home/u/h", "usr/bin/h"}) {
      CAPTURE(name);
      util::Fd fd(::open((root / name).c_str(), O_RDONLY | O_CLOEXEC));
      CHECK(!materialize::is_placeholder(fd.get()));
      std::ifstream in(root / name);
      CHECK(std::string((std::istreambuf_iterator<char>(in)), {}) == big);
    }
    CHECK(!fs::exists(ao.journal));
    fs::remove_all(root);
  }
}
