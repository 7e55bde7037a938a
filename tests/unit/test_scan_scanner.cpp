#include <doctest/doctest.h>

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>

#include "check_error.hpp"
#include "libmirage/scan/scanner.hpp"
#include "libmirage/tree/tree.hpp"
#include "libmirage/util/error.hpp"
#include "tests/unit/temp_dir.hpp"

using namespace mirage;
namespace fs = std::filesystem;

namespace {

std::string cwd() {
  char buf[4096];
  return ::getcwd(buf, sizeof buf) ? std::string(buf) : std::string("?");
}

/// Lacks every chunk and keeps nothing; notes the working directory at each call.
class CwdSink : public scan::ChunkSink {
 public:
  std::vector<bool> missing(std::span<const util::Digest> ids) override {
    note();
    return std::vector<bool>(ids.size(), true);
  }
  void put(std::vector<uint8_t>) override { note(); }
  void note() {
    std::lock_guard lock(m_mutex);
    seen.insert(cwd());
  }
  std::set<std::string> seen;

 private:
  std::mutex m_mutex;
};

/// Lacks every chunk; every put fails (a server killed under the upload). Counts the
/// questions asked once a put had failed.
class DeadServerSink : public scan::ChunkSink {
 public:
  std::vector<bool> missing(std::span<const util::Digest> ids) override {
    if (m_put_failed) asked_after_failure++;
    return std::vector<bool>(ids.size(), true);
  }
  void put(std::vector<uint8_t>) override {
    m_put_failed = true;
    throw Error(ErrorKind::unavailable, "local server exited without replying");
  }
  std::atomic<int> asked_after_failure{0};

 private:
  std::atomic<bool> m_put_failed{false};
};

}  // namespace

TEST_SUITE_BEGIN("scan::scan");

TEST_CASE("a put that fails in the background stops the scan at once, not at its worker's next batch") {
  // A worker's put runs in the background. When it fails, the walk and every worker stop
  // then: before, the error waited for that worker's next upload or its flush at the end,
  // so the scan read every remaining file and asked the dead server again first.
  std::string tmpl = (fs::temp_directory_path() / "mirage-scan-XXXXXX").string();
  fs::path dir = ::mkdtemp(tmpl.data());
  std::mt19937_64 rng(7);
  auto random_file = [&](const fs::path& path, size_t size) {
    std::string data(size, '\0');
    for (auto& c : data) c = static_cast<char>(rng());
    std::ofstream(path, std::ios::binary) << data;
  };
  fs::create_directories(dir / "root/b");
  random_file(dir / "root/a-big", 5u << 20);  // walked first: fills a 4 MiB batch, whose put fails
  for (int i = 0; i < 300; ++i) random_file(dir / "root/b" / ("f" + std::to_string(i)), 4096);
  for (unsigned threads : {1u, 2u}) {
    CAPTURE(threads);
    DeadServerSink sink;
    scan::ScanOptions o;
    o.root = dir / "root";
    o.threads = threads;
    CHECK(test::thrown_kind([&] { scan::scan(o, sink); }) == "unavailable");
    // One worker: nothing asked once its put failed (before the fix it read on and asked
    // at its flush). Two: the other worker may be asking as the put fails, in the moment
    // between the sink's failure and the pipeline's hearing of it (seen once on a loaded
    // machine); more than that one would be a worker that did not stop.
    CHECK(sink.asked_after_failure <= static_cast<int>(threads) - 1);
  }
  fs::remove_all(dir);
}

TEST_CASE("the walk never changes the process's working directory") {
  // chdir is process-wide: upload threads and, in a server, other requests would see it.
  std::string tmpl = (fs::temp_directory_path() / "mirage-scan-XXXXXX").string();
  fs::path dir = ::mkdtemp(tmpl.data());
  fs::create_directories(dir / "root/a/b");
  fs::create_directories(dir / "elsewhere");
  std::ofstream(dir / "root/a/b/file") << "some content";
  std::ofstream(dir / "root/top") << "more content";
  std::string before = cwd();
  REQUIRE(::chdir((dir / "elsewhere").c_str()) == 0);
  const std::string here = cwd();
  for (unsigned threads : {0u, 2u}) {
    CAPTURE(threads);
    CwdSink sink;
    std::set<std::string> in_callbacks;
    scan::ScanOptions so;
    so.root = dir / "root";
    so.threads = threads;
    so.on_tree = [&](const util::Digest&, std::span<const uint8_t>) { in_callbacks.insert(cwd()); };
    auto result = scan::scan(so, sink);
    CHECK(result.stats.files == 2);
    CHECK(cwd() == here);
    CHECK(sink.seen == std::set<std::string>{here});
    CHECK(in_callbacks == std::set<std::string>{here});
  }
  REQUIRE(::chdir(before.c_str()) == 0);
  fs::remove_all(dir);
}

TEST_CASE("a scan of more files than the prefetch's credit, all in the page cache, ends") {
  // The prefetch runs on credit from page-cache misses; with every file cached it stops
  // asking and must still end with the walk (a scan of this size hung once).
  std::string tmpl = (fs::temp_directory_path() / "mirage-scan-XXXXXX").string();
  fs::path dir = ::mkdtemp(tmpl.data());
  for (int d = 0; d < 12; ++d) {
    fs::create_directories(dir / std::to_string(d));
    for (int f = 0; f < 100; ++f) std::ofstream(dir / std::to_string(d) / std::to_string(f)) << d << " file " << f;
  }
  CwdSink sink;
  scan::ScanOptions so;
  so.root = dir;
  so.threads = 2;
  auto result = scan::scan(so, sink);
  CHECK(result.stats.files == 1200);
  fs::remove_all(dir);
}

TEST_CASE("a file that grows between the walk's stat and its read is reported as changed") {
  // Its content is read to its end; the stat after the read differs from the walk's, so
  // the file is reported (and not cached: the next scan reads it again).
  std::string tmpl = (fs::temp_directory_path() / "mirage-scan-XXXXXX").string();
  fs::path dir = ::mkdtemp(tmpl.data());
  std::mt19937_64 rng(11);
  std::string big(5u << 20, '\0');
  for (auto& c : big) c = static_cast<char>(rng());
  std::ofstream(dir / "a-big", std::ios::binary) << big;  // read first; a batch fills in it
  std::ofstream(dir / "b-small") << "twelve bytes";
  // Appends to b-small at the first question, asked when a-big's first batch is full:
  // after the walk stat'ed b-small (same directory), before a worker reads it.
  class GrowingSink : public CwdSink {
   public:
    explicit GrowingSink(fs::path path) : m_path(std::move(path)) {}
    std::vector<bool> missing(std::span<const util::Digest> ids) override {
      if (!m_grown.exchange(true)) std::ofstream(m_path, std::ios::app) << " and more";
      return CwdSink::missing(ids);
    }

   private:
    fs::path m_path;
    std::atomic<bool> m_grown{false};
  } sink(dir / "b-small");
  scan::ScanOptions so;
  so.root = dir;
  so.threads = 1;
  auto result = scan::scan(so, sink);
  bool warned = false;
  for (const auto& w : result.stats.warnings) warned |= w.find("b-small: changed while it was read") != std::string::npos;
  CHECK(warned);
  fs::remove_all(dir);
}

TEST_SUITE_END();

TEST_CASE("on_tree gets the trees the previous cache does not list: none for an unchanged tree, the changed path's after an edit") {
  test::TempDir dir;
  fs::create_directories(dir.path() / "a/b");
  fs::create_directories(dir.path() / "c");
  std::ofstream(dir.path() / "a/b/file") << "some content";
  std::ofstream(dir.path() / "c/other") << "more content";
  auto scan_with = [&](scan::FilesCache* cache, size_t* given) {
    CwdSink sink;
    scan::ScanOptions so;
    so.root = dir.path();
    so.cache = cache;
    so.on_tree = [&](const util::Digest&, std::span<const uint8_t>) { ++*given; };
    return scan::scan(so, sink);
  };
  size_t first = 0, again = 0, edited = 0;
  auto r1 = scan_with(nullptr, &first);
  CHECK(first == 4);  // /, a, a/b and c
  auto r2 = scan_with(&r1.next_cache, &again);
  CHECK(r2.tree == r1.tree);
  CHECK(again == 0);
  std::ofstream(dir.path() / "a/b/file") << "changed";
  auto r3 = scan_with(&r2.next_cache, &edited);
  CHECK(r3.tree != r1.tree);
  CHECK(edited == 3);  // a/b, a and / are new; c is not
}

TEST_CASE("a walk on several threads builds the trees of a walk on one, hardlink groups named alike") {
  test::TempDir dir;
  const fs::path root = dir.path();
  for (int d = 0; d < 30; ++d)
    for (int s = 0; s < 3; ++s) {
      fs::path sub = root / ("d" + std::to_string(d)) / ("s" + std::to_string(s));
      fs::create_directories(sub);
      for (int f = 0; f < 4; ++f) std::ofstream(sub / ("f" + std::to_string(f))) << d << "/" << s << "/" << f;
    }
  // One inode under four names: a one-thread walk lists /D's own names before it walks
  // into /D/a, and /D/a before /D/a-c ('-' sorts before '/', names are compared alone).
  fs::create_directories(root / "D/a");
  fs::create_directories(root / "D/a-c");
  fs::create_directories(root / "E");
  std::ofstream(root / "D/a/x") << "shared content";
  fs::create_hard_link(root / "D/a/x", root / "D/b");
  fs::create_hard_link(root / "D/a/x", root / "D/a-c/y");
  fs::create_hard_link(root / "D/a/x", root / "E/z");
  // And two names deeper in sibling directories.
  fs::create_directories(root / "p/a");
  fs::create_directories(root / "p/a-c");
  std::ofstream(root / "p/a-c/r") << "other shared content";
  fs::create_hard_link(root / "p/a-c/r", root / "p/a/q");

  auto scan_on = [&](unsigned threads, std::map<std::string, std::string>* groups) {
    CwdSink sink;
    scan::ScanOptions so;
    so.root = root;
    so.threads = threads;
    std::mutex m;
    std::vector<std::vector<uint8_t>> trees;
    so.on_tree = [&](const util::Digest&, std::span<const uint8_t> data) {
      std::lock_guard lock(m);
      trees.emplace_back(data.begin(), data.end());
    };
    auto r = scan::scan(so, sink);
    for (const auto& t : trees)
      for (const auto& e : tree::decode(t, "tree").entries)
        if (!e.link_group.empty()) (*groups)[e.name] = e.link_group;
    CHECK(r.stats.hardlinks == 4);
    CHECK(r.stats.dirs == 30 + 90 + 7);  // d*, d*/s*, D D/a D/a-c E p p/a p/a-c
    return r.tree;
  };
  std::map<std::string, std::string> one;
  auto expected = scan_on(1, &one);
  CHECK(one == std::map<std::string, std::string>{
                   {"b", "/D/b"}, {"x", "/D/b"}, {"y", "/D/b"}, {"z", "/D/b"}, {"q", "/p/a/q"}, {"r", "/p/a/q"}});
  for (int round = 0; round < 5; ++round) {
    std::map<std::string, std::string> many;
    CHECK(scan_on(4, &many) == expected);
    CHECK(many == one);
  }
}
