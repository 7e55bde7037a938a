#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
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
#include "libmirage/util/fd.hpp"
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
  test::TempDir temp;
  const fs::path& dir = temp.path();
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
}

TEST_CASE("the walk never changes the process's working directory") {
  // chdir is process-wide: upload threads and, in a server, other requests would see it.
  test::TempDir temp;
  const fs::path& dir = temp.path();
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
}

TEST_CASE("a scan of more files than the prefetch's credit, all in the page cache, ends") {
  // The prefetch runs on credit from page-cache misses; with every file cached it stops
  // asking and must still end with the walk (a scan of this size hung once).
  test::TempDir temp;
  const fs::path& dir = temp.path();
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
}

TEST_CASE("a file that grows between the walk's stat and its read is reported as changed") {
  // Its content is read to its end; the stat after the read differs from the walk's, so
  // the file is reported (and not cached: the next scan reads it again).
  test::TempDir temp;
  const fs::path& dir = temp.path();
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
  // Read again, whole: stored as it is now, not counted unreadable.
  CHECK(result.stats.unreadable == 0);
  CHECK(result.stats.bytes == big.size() + std::string("twelve bytes and more").size());
}

TEST_CASE("a sparse file's holes are not read, and it chunks exactly as the same bytes written out") {
  test::TempDir temp;
  const fs::path& dir = temp.path();
  fs::create_directories(dir / "sparse");
  fs::create_directories(dir / "dense");
  std::mt19937_64 rng(5);
  auto noise = [&](size_t n) {
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    return s;
  };
  // Data at 0, in the middle (not on a block boundary) and at the end of 64 MiB; the rest holes.
  const uint64_t size = 64u << 20;
  std::vector<std::pair<uint64_t, std::string>> islands = {
      {0, noise(100000)}, {(20u << 20) + 12345, noise(300000)}, {size - 5000, noise(5000)}};
  {
    util::Fd fd(::open((dir / "sparse/f").c_str(), O_CREAT | O_WRONLY, 0644));
    REQUIRE(::ftruncate(fd.get(), static_cast<off_t>(size)) == 0);
    for (const auto& [at, bytes] : islands)
      REQUIRE(::pwrite(fd.get(), bytes.data(), bytes.size(), static_cast<off_t>(at)) == static_cast<ssize_t>(bytes.size()));
  }
  std::string dense(size, '\0');
  for (const auto& [at, bytes] : islands) dense.replace(at, bytes.size(), bytes);
  std::ofstream(dir / "dense/f", std::ios::binary) << dense;
  struct stat st;
  REQUIRE(::stat((dir / "sparse/f").c_str(), &st) == 0);
  if (static_cast<uint64_t>(st.st_blocks) * 512 >= size) {
    return;  // a filesystem without holes: nothing to tell apart
  }
  auto chunks_of = [&](const fs::path& root) {
    CwdSink sink;
    scan::ScanOptions so;
    so.root = root;
    so.threads = 1;
    std::vector<tree::ChunkRef> chunks;
    so.on_tree = [&](const util::Digest&, std::span<const uint8_t> data) {
      for (const auto& e : tree::decode(data, "root").entries)
        if (e.name == "f") chunks = e.chunks;
    };
    auto result = scan::scan(so, sink);
    CHECK(result.stats.bytes == size);
    CHECK(result.stats.unreadable == 0);
    return chunks;
  };
  // Bytes this process read (rchar: every read(2), page cache or not).
  auto bytes_read = [] {
    std::ifstream io("/proc/self/io");
    std::string key;
    uint64_t value = 0;
    while (io >> key >> value)
      if (key == "rchar:") return value;
    return uint64_t{0};
  };
  uint64_t before = bytes_read();
  auto from_holes = chunks_of(dir / "sparse");
  uint64_t read_sparse = bytes_read() - before;
  auto from_bytes = chunks_of(dir / "dense");
  // The holes (~63.6 of the 64 MiB) were not read: the data and a max_size either side at most.
  CHECK(read_sparse < (8u << 20));
  REQUIRE(from_holes.size() == from_bytes.size());
  for (size_t i = 0; i < from_holes.size(); ++i) {
    CAPTURE(i);
    CHECK(from_holes[i].id == from_bytes[i].id);
    CHECK(from_holes[i].size == from_bytes[i].size);
  }
}

TEST_CASE("a file whose chunk list one tree entry cannot hold is left out, named, and the rest scanned") {
  test::TempDir temp;
  const fs::path& dir = temp.path();
  {
    // 400 GiB of holes: 1.6M zero-run chunks, over tree::k_max_file_chunks.
    util::Fd fd(::open((dir / "huge.img").c_str(), O_CREAT | O_WRONLY, 0644));
    REQUIRE(::ftruncate(fd.get(), static_cast<off_t>(400ull << 30)) == 0);
  }
  std::ofstream(dir / "small") << "kept";
  struct stat st;
  REQUIRE(::stat((dir / "huge.img").c_str(), &st) == 0);
  if (st.st_blocks != 0) {  // a filesystem without holes would read 400 GiB
    return;
  }
  CwdSink sink;
  scan::ScanOptions so;
  so.root = dir;
  so.threads = 1;
  auto result = scan::scan(so, sink);
  CHECK(result.stats.files == 2);
  CHECK(result.stats.unreadable == 1);
  REQUIRE(result.stats.unreadable_entries.size() == 1);
  CHECK(result.stats.unreadable_entries[0].path == "/huge.img");
  CHECK(result.stats.unreadable_entries[0].reason.find("too large for one tree entry") != std::string::npos);
  CHECK(result.stats.bytes == 4);  // the small file only
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
