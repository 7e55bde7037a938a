#include <doctest/doctest.h>

#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "libmirage/materialize/stream.hpp"
#include "libmirage/util/fd.hpp"
#include "tests/unit/memory_source.hpp"

using namespace mirage;
using mirage::testing::MemorySource;
using tree::Entry;
namespace fs = std::filesystem;

namespace {

/// A source of its own for a filler thread, over the shared objects.
class SharedSource : public materialize::ObjectSource {
 public:
  explicit SharedSource(MemorySource& src) : m_src(src) {}
  std::vector<uint8_t> records(std::span<const util::Digest> ids) override { return m_src.records(ids); }

 private:
  MemorySource& m_src;
};

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool marked(const fs::path& p) { return ::getxattr(p.c_str(), materialize::k_placeholder_xattr, nullptr, 0) >= 0; }

struct Fixture {
  MemorySource src;
  Entry root;
  fs::path to;
  std::string big = std::string(300000, 'b') + "end";
  Fixture() {
    char tmpl[] = "/var/tmp/mirage-stream-XXXXXX";
    to = ::mkdtemp(tmpl);
    Entry home = src.dir("home", {src.file("new.txt", "newest", 3'000'000'000), src.file("old.txt", "older", 1'000'000'000)});
    Entry etc = src.dir("etc", {src.file("hostname", "pc\n")});
    Entry opt = src.dir("opt", {src.file("big.bin", big), src.file("empty", "")});
    root = src.dir("", {etc, home, opt});
  }
  ~Fixture() { fs::remove_all(to); }

  /// A streaming restore of everything: /etc whole, the rest placeholders.
  materialize::RestoreStats restore(materialize::Streamer& s) {
    materialize::RestoreOptions ro;
    ro.to = to;
    ro.paths = {"/"};
    ro.root = root;
    ro.tree = root.subtree;
    ro.overwrite = materialize::Overwrite::if_changed;
    ro.placeholder = [](const std::string& path, const Entry&) { return path.rfind("/etc", 0) != 0; };
    ro.on_placeholder = [&s](int dirfd, const std::string& name, const std::string& path, const Entry& e) {
      s.add(dirfd, name, path, e);
    };
    return materialize::restore(ro, src);
  }
  materialize::Streamer::Options options() {
    materialize::Streamer::Options o;
    o.to = to;
    o.source = [this] { return std::make_unique<SharedSource>(src); };
    o.rank = [](const std::string& path, const Entry&) { return path.rfind("/home", 0) == 0 ? 0 : 1; };
    return o;
  }
};

}  // namespace

TEST_CASE("streaming restore: placeholders of the final size, marked, filled in place") {
  Fixture f;
  materialize::Streamer streamer(f.options());
  auto stats = f.restore(streamer);
  CHECK(stats.placeholders == 3);  // the empty file is written whole: nothing to fill
  CHECK(read(f.to / "etc/hostname") == "pc\n");
  CHECK_FALSE(marked(f.to / "etc/hostname"));
  CHECK(fs::file_size(f.to / "opt/big.bin") == f.big.size());
  CHECK(marked(f.to / "opt/big.bin"));
  CHECK(read(f.to / "opt/big.bin") == std::string(f.big.size(), '\0'));  // this process reads without waiting
  CHECK_FALSE(marked(f.to / "opt/empty"));
  auto p = streamer.fill();
  CHECK(p.files_done == 3);
  CHECK(p.bytes_done == f.big.size() + 6 + 5);
  CHECK(read(f.to / "opt/big.bin") == f.big);
  CHECK(read(f.to / "home/new.txt") == "newest");
  CHECK_FALSE(marked(f.to / "opt/big.bin"));
  struct stat st;
  REQUIRE(::stat((f.to / "home/new.txt").c_str(), &st) == 0);
  CHECK(int64_t(st.st_mtim.tv_sec) == 3);  // the snapshot's mtime again after the write
}

TEST_CASE("streaming restore: run again, it refills what is still a placeholder and keeps the rest") {
  Fixture f;
  {
    materialize::Streamer first(f.options());
    f.restore(first);  // killed before the fill: every placeholder stays marked
  }
  // A user's own edit after the kill: not complete by the quick check (its mtime), so
  // the rerun makes it a placeholder again.
  {
    std::ofstream(f.to / "home/old.txt", std::ios::trunc) << "mine!";
    ::removexattr((f.to / "home/old.txt").c_str(), materialize::k_placeholder_xattr);
  }
  materialize::Streamer second(f.options());
  auto stats = f.restore(second);
  CHECK(stats.placeholders == 3);
  auto p = second.fill();
  CHECK(p.files_done == 3);
  CHECK(read(f.to / "home/old.txt") == "older");
  materialize::Streamer third(f.options());
  auto again = f.restore(third);
  CHECK(again.placeholders == 0);  // all complete: kept
  CHECK(third.fill().files_total == 0);
}

TEST_CASE("streaming restore: the user area first, newest first") {
  Fixture f;
  materialize::Streamer streamer(f.options());
  f.restore(streamer);
  auto p = streamer.fill();
  CHECK(p.files_done == 3);
  // Everything filled; the order is checked through the mtimes of the rank-0 files:
  // new.txt (3 s) before old.txt (1 s) before /opt (rank 1). Each fill sets the file's
  // ctime; their ctimes increase in fill order.
  auto ctime = [&](const char* rel) {
    struct stat st;
    REQUIRE(::stat((f.to / rel).c_str(), &st) == 0);
    return st.st_ctim.tv_sec * 1'000'000'000LL + st.st_ctim.tv_nsec;
  };
  CHECK(ctime("home/new.txt") <= ctime("home/old.txt"));
  CHECK(ctime("home/old.txt") <= ctime("opt/big.bin"));
}

TEST_CASE("streaming restore: another process that reads a placeholder gets its bytes before the fill") {
  Fixture f;
  materialize::Streamer streamer(f.options());
  f.restore(streamer);
  if (!streamer.on_demand()) {
    MESSAGE("no fanotify pre-content events here: " << streamer.why_not());
    return;
  }
  // cat is another process: its read waits until the file is filled on demand.
  std::string cmd = "cat '" + (f.to / "opt/big.bin").string() + "' | sha256sum";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  REQUIRE(pipe);
  char buf[128] = {};
  size_t n = std::fread(buf, 1, sizeof buf - 1, pipe);
  ::pclose(pipe);
  CHECK(std::string(buf, n).substr(0, 64) == util::sha256(f.big).hex());
  CHECK_FALSE(marked(f.to / "opt/big.bin"));  // filled on demand, before fill() ran
  auto p = streamer.fill();
  CHECK(p.on_demand == 1);
  CHECK(p.files_done == 3);
}

TEST_CASE("streaming restore: a placeholder changed at the target before its fill is left as it is, with a warning") {
  Fixture f;
  materialize::Streamer streamer(f.options());
  f.restore(streamer);
  {
    std::ofstream(f.to / "home/old.txt", std::ios::trunc) << "mine!";
    ::removexattr((f.to / "home/old.txt").c_str(), materialize::k_placeholder_xattr);
  }
  auto p = streamer.fill();
  CHECK(read(f.to / "home/old.txt") == "mine!");
  auto w = streamer.warnings();
  REQUIRE(w.size() == 1);
  CHECK(w[0].find("/home/old.txt") != std::string::npos);
  CHECK(p.files_done == 3);
}
