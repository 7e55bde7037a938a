#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <string>

#include "libmirage/scan/scanner.hpp"

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

}  // namespace

TEST_SUITE_BEGIN("scan::scan");

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

TEST_SUITE_END();
