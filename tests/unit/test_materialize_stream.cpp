#include <doctest/doctest.h>

#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
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

/// Lets the first `free` fetches through and holds every later one until open() (a fill
/// stopped part way, deterministically).
class Gate {
 public:
  explicit Gate(int free) : m_free(free) {}
  void pass() {
    std::unique_lock lock(m_mutex);
    if (m_free > 0) {
      m_free--;
      return;
    }
    m_changed.wait(lock, [&] { return m_open; });
  }
  void open() {
    {
      std::lock_guard lock(m_mutex);
      m_open = true;
    }
    m_changed.notify_all();
  }

 private:
  std::mutex m_mutex;
  std::condition_variable m_changed;
  int m_free;
  bool m_open = false;
};

class GatedSource : public materialize::ObjectSource {
 public:
  GatedSource(MemorySource& src, Gate& gate) : m_src(src), m_gate(gate) {}
  std::vector<uint8_t> records(std::span<const util::Digest> ids) override {
    m_gate.pass();
    return m_src.records(ids);
  }

 private:
  MemorySource& m_src;
  Gate& m_gate;
};

/// A streamer's options over `src` whose every fetch passes `gate`.
materialize::Streamer::Options gated_options(MemorySource& src, Gate& gate, const fs::path& to) {
  materialize::Streamer::Options o;
  o.to = to;
  o.source = [&src, &gate] { return std::make_unique<GatedSource>(src, gate); };
  return o;
}

/// A streaming restore of all of `root` into `to`: what `placeholder` picks (everything
/// by default) made a placeholder and handed to `streamer`.
materialize::RestoreStats restore_streaming(
    MemorySource& src, const Entry& root, const fs::path& to, materialize::Streamer& streamer,
    std::function<bool(const std::string&, const Entry&)> placeholder = [](const std::string&, const Entry&) {
      return true;
    }) {
  auto ro = mirage::testing::restore_options(root, to);
  ro.placeholder = std::move(placeholder);
  ro.on_placeholder = [&streamer](int dirfd, const std::string& name, const std::string& path, const Entry& e) {
    streamer.add(dirfd, name, path, e);
  };
  return materialize::restore(ro, src);
}

/// A file of `count` chunks of 64 KiB, each of its own bytes.
Entry chunked_file(MemorySource& src, const std::string& name, size_t count, std::string* content) {
  Entry e = src.file(name, "");
  for (size_t i = 0; i < count; ++i) {
    std::string piece(64 * 1024, char('A' + i % 26));
    piece.replace(0, 16, "chunk " + std::to_string(i + 1000000000));
    e.chunks.push_back({src.put(piece), piece.size()});
    e.size += piece.size();
    *content += piece;
  }
  return e;
}

/// A directory under /var/tmp (a file system with pre-content events, unlike tmpfs),
/// removed at the end.
struct VarTmp {
  fs::path path;
  VarTmp() {
    char tmpl[] = "/var/tmp/mirage-stream-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~VarTmp() { fs::remove_all(path); }
};

/// The output of shell command `cmd`.
std::string run(const std::string& cmd) {
  FILE* pipe = ::popen(cmd.c_str(), "r");
  REQUIRE(pipe);
  std::string out;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  ::pclose(pipe);
  return out;
}

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
    auto ro = mirage::testing::restore_options(root, to);
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
  // Filled on demand, before fill() ran: the read goes on once the bytes are in, and the
  // mark goes once they are durable, a moment later (10 s at the most here).
  for (int i = 0; i < 1000 && marked(f.to / "opt/big.bin"); ++i) ::usleep(10'000);
  CHECK_FALSE(marked(f.to / "opt/big.bin"));
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

TEST_CASE("streaming restore: a read of part of a large placeholder goes on once its bytes are in, before the file is whole") {
  for (uint64_t at : {uint64_t(0), uint64_t(5u << 20)}) {  // the first 4 KiB, and 4 KiB in the middle
    CAPTURE(at);
    MemorySource src;
    std::string content;
    Entry big = chunked_file(src, "big.bin", 160, &content);  // 10 MiB: more than one fetch of a whole file
    Entry root = src.dir("", {src.dir("opt", {big})});
    VarTmp tmp;
    fs::path to = tmp.path;
    Gate gate(1);  // the on-demand fill's first fetch, then it stops
    materialize::Streamer streamer(gated_options(src, gate, to));
    restore_streaming(src, root, to, streamer);
    if (!streamer.on_demand()) {
      gate.open();
      MESSAGE("no fanotify pre-content events here: " << streamer.why_not());
      return;
    }
    fs::path file = to / "opt/big.bin";
    // Another process reads 4 KiB; the fill is held after its first fetch, so the read
    // can only end before the file is whole (a read that waits for the whole file times out).
    std::string got = run("timeout 20 dd if='" + file.string() + "' bs=4096 count=1 skip=" + std::to_string(at / 4096) +
                          " status=none | sha256sum");
    CHECK(got.substr(0, 64) == util::sha256(content.substr(at, 4096)).hex());
    CHECK(marked(file));
    // Not whole: this process reads without waiting, and far from the read there is still a hole.
    std::string now = read(file);
    uint64_t far = at == 0 ? content.size() - 65536 : 0;
    bool hole = now.substr(far, 65536) == std::string(65536, '\0');
    CHECK(hole);
    CHECK(now.substr(at, 4096) == content.substr(at, 4096));
    gate.open();
    auto p = streamer.fill();
    CHECK(p.files_done == 1);
    CHECK(p.on_demand == 1);
    CHECK(read(file) == content);
    CHECK_FALSE(marked(file));
  }
}

TEST_CASE("streaming restore: a hardlink group with a name in the minimal set is written whole, one inode") {
  MemorySource src;
  std::string content;
  Entry head = chunked_file(src, "a", 8, &content);
  head.link_group = "/home/a";
  Entry in_usr = head;
  in_usr.name = "b";
  Entry in_opt = head;
  in_opt.name = "c";
  // A group outside the minimal set: a placeholder filled by the streamer.
  Entry other = src.file("x", "other bytes");
  other.link_group = "/home/x";
  Entry other2 = other;
  other2.name = "y";
  Entry root = src.dir("", {src.dir("home", {head, other}), src.dir("opt", {in_opt, other2}), src.dir("usr", {in_usr})});
  VarTmp tmp;
  fs::path to = tmp.path;
  materialize::Streamer::Options o;
  o.to = to;
  o.source = [&] { return std::make_unique<SharedSource>(src); };
  materialize::Streamer streamer(o);
  auto stats = restore_streaming(src, root, to, streamer,
                                 [](const std::string& path, const Entry&) { return path.rfind("/usr", 0) != 0; });
  // When restore() returns the tree is usable: the name in /usr has its bytes, not a hole.
  CHECK_FALSE(marked(to / "usr/b"));
  CHECK(read(to / "usr/b") == content);
  CHECK(stats.placeholders == 1);  // only the group of x
  CHECK(marked(to / "home/x"));
  auto ino = [&](const char* rel) {
    struct stat st;
    return ::stat((to / rel).c_str(), &st) == 0 ? st.st_ino : ino_t(0);
  };
  CHECK(ino("home/a") == ino("usr/b"));
  CHECK(ino("home/a") == ino("opt/c"));
  CHECK(ino("home/x") == ino("opt/y"));
  auto p = streamer.fill();
  CHECK(p.files_total == 1);
  CHECK(read(to / "opt/y") == "other bytes");
  CHECK_FALSE(marked(to / "home/x"));
  CHECK(read(to / "opt/c") == content);
}

TEST_CASE("streaming restore: a reader killed while its read is held does not stop the fill") {
  MemorySource src;
  std::string content;
  Entry big = chunked_file(src, "big.bin", 16, &content);
  Entry root = src.dir("", {src.dir("opt", {big})});
  VarTmp tmp;
  fs::path to = tmp.path;
  Gate gate(0);  // every fetch held until the reader is gone
  materialize::Streamer streamer(gated_options(src, gate, to));
  restore_streaming(src, root, to, streamer);
  if (!streamer.on_demand()) {
    gate.open();
    MESSAGE("no fanotify pre-content events here: " << streamer.why_not());
    return;
  }
  fs::path file = to / "opt/big.bin";
  // Killed (SIGKILL) a second into its wait: the kernel drops its event.
  std::string got = run("timeout -s KILL 1 dd if='" + file.string() + "' bs=4096 count=1 status=none | wc -c");
  CHECK(got == "0\n");
  gate.open();
  auto p = streamer.fill();
  CHECK(p.files_done == 1);
  CHECK(streamer.warnings().empty());
  CHECK(read(file) == content);
  CHECK_FALSE(marked(file));
  std::string again = run("timeout 20 cat '" + file.string() + "' | sha256sum");
  CHECK(again.substr(0, 64) == util::sha256(content).hex());
}

TEST_CASE("streaming restore: a placeholder a user moved before its fill (or its directory) is filled where it is now") {
  Fixture f;
  materialize::Streamer streamer(f.options());
  f.restore(streamer);
  fs::rename(f.to / "home/old.txt", f.to / "home/renamed.txt");
  fs::rename(f.to / "opt", f.to / "opt2");
  auto p = streamer.fill();
  CHECK(p.files_done == 3);
  CHECK(read(f.to / "home/renamed.txt") == "older");
  CHECK_FALSE(marked(f.to / "home/renamed.txt"));
  CHECK(read(f.to / "opt2/big.bin") == f.big);
  CHECK_FALSE(marked(f.to / "opt2/big.bin"));
  CHECK(read(f.to / "home/new.txt") == "newest");
  auto w = streamer.warnings();
  REQUIRE(w.size() == 2);
  for (const auto& m : w) CHECK(m.find("moved to") != std::string::npos);
}
