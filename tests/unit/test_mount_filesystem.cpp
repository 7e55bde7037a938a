#include <doctest/doctest.h>

#include <sys/sysmacros.h>

#include <map>
#include <mutex>

#include "libmirage/mount/filesystem.hpp"
#include "libmirage/store/record.hpp"
#include "tests/unit/check_error.hpp"

using namespace mirage;
using tree::Entry;
using tree::Kind;

namespace {

/// Objects in memory, counting the ids asked for (what a read cost).
class Source : public materialize::ObjectSource {
 public:
  util::Digest put(const std::string& plain) {
    auto id = util::sha256(plain);
    objects[id] = plain;
    return id;
  }
  std::vector<uint8_t> records(std::span<const util::Digest> ids) override {
    std::lock_guard lock(mutex);  // background reads call from another thread
    std::vector<uint8_t> out;
    requests++;
    for (const auto& id : ids) {
      asked.push_back(id);
      auto it = objects.find(id);
      if (it == objects.end()) continue;
      std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(it->second.data()), it->second.size());
      store::append_plain(out, id, bytes, 1);
    }
    return out;
  }
  Entry dir(const std::string& name, std::vector<Entry> entries) {
    auto o = tree::encode_dir(tree::Tree{std::move(entries)});
    for (auto& p : o.pieces) objects[p.id] = std::string(p.data.begin(), p.data.end());
    objects[o.top.id] = std::string(o.top.data.begin(), o.top.data.end());
    Entry e;
    e.name = name;
    e.kind = Kind::dir;
    e.mode = 0750;
    e.uid = 7;
    e.subtree = o.top.id;
    return e;
  }
  /// A file of the given chunks.
  Entry file(const std::string& name, const std::vector<std::string>& parts) {
    Entry e;
    e.name = name;
    e.kind = Kind::file;
    e.mode = 0640;
    e.uid = 1000;
    e.gid = 100;
    e.mtime_ns = 1'700'000'000'123'456'789;
    for (const auto& p : parts) {
      e.chunks.push_back({put(p), p.size()});
      e.size += p.size();
    }
    return e;
  }
  std::map<util::Digest, std::string> objects;
  std::vector<util::Digest> asked;
  size_t requests = 0;
  std::mutex mutex;
};

Entry symlink_to(const std::string& name, const std::string& target) {
  Entry e;
  e.name = name;
  e.kind = Kind::symlink;
  e.mode = 0777;
  e.target = target;
  return e;
}

std::vector<std::string> names(mount::Filesystem& fs, uint64_t ino) {
  std::vector<std::string> out;
  auto dir = fs.opendir(ino);
  for (const auto& i : dir->items) out.push_back(i.name);
  return out;
}

std::string read_all(mount::Filesystem& fs, uint64_t ino, uint64_t offset, size_t size) {
  auto f = fs.open(ino);
  std::string out(size, '\0');
  size_t n = fs.read(*f, offset, std::span(reinterpret_cast<uint8_t*>(out.data()), out.size()));
  out.resize(n);
  return out;
}

}  // namespace

TEST_SUITE_BEGIN("mount");

TEST_CASE("the layout: snapshots/<id>, latest and by-date, each snapshot's tree as stored") {
  Source src;
  auto a = src.dir("", {src.file("f", {"old"})});
  auto b = src.dir("", {src.file("f", {"new!"}), symlink_to("l", "f")});
  int64_t t = 1'764'756'900'000'000'000;  // 2025-12-03T10:15:00Z
  mount::Filesystem fs(src, {{"aaaa", t, a}, {"bbbb", t + 500'000'000, b}}, {});
  CHECK(names(fs, mount::Filesystem::k_root) == std::vector<std::string>{"by-date", "latest", "snapshots"});
  auto snaps = fs.lookup(mount::Filesystem::k_root, "snapshots");
  CHECK(S_ISDIR(snaps.st_mode));
  CHECK(names(fs, snaps.st_ino) == std::vector<std::string>{"aaaa", "bbbb"});
  auto latest = fs.lookup(mount::Filesystem::k_root, "latest");
  CHECK(S_ISLNK(latest.st_mode));
  CHECK(fs.readlink(latest.st_ino) == "snapshots/bbbb");
  auto by_date = fs.lookup(mount::Filesystem::k_root, "by-date");
  CHECK(names(fs, by_date.st_ino) == std::vector<std::string>{"2025-12-03T10:15:00Z", "2025-12-03T10:15:00Z-1"});
  CHECK(fs.readlink(fs.lookup(by_date.st_ino, "2025-12-03T10:15:00Z-1").st_ino) == "../snapshots/bbbb");

  auto root_b = fs.lookup(snaps.st_ino, "bbbb");
  CHECK(root_b.st_mode == (S_IFDIR | 0750));
  CHECK(root_b.st_uid == 7);
  CHECK(names(fs, root_b.st_ino) == std::vector<std::string>{"f", "l"});
  auto listed = fs.opendir(root_b.st_ino);  // a listing's d_ino is what lookup gives
  CHECK(listed->items[0].ino == fs.lookup(root_b.st_ino, "f").st_ino);
  CHECK(listed->items[1].ino != 0);
  auto f = fs.lookup(root_b.st_ino, "f");
  CHECK(f.st_mode == (S_IFREG | 0640));
  CHECK(f.st_uid == 1000);
  CHECK(f.st_gid == 100);
  CHECK(f.st_size == 4);
  CHECK(f.st_mtim.tv_sec == 1'700'000'000);
  CHECK(f.st_mtim.tv_nsec == 123'456'789);
  CHECK(read_all(fs, f.st_ino, 0, 100) == "new!");
  CHECK(read_all(fs, fs.lookup(fs.lookup(snaps.st_ino, "aaaa").st_ino, "f").st_ino, 0, 100) == "old");
  auto l = fs.lookup(root_b.st_ino, "l");
  CHECK(l.st_size == 1);
  CHECK(fs.readlink(l.st_ino) == "f");
  CHECK_ERROR_KIND(fs.lookup(root_b.st_ino, "missing"), ErrorKind::not_found);
  CHECK_ERROR_KIND(fs.lookup(f.st_ino, "x"), ErrorKind::usage);
  CHECK_ERROR_KIND(fs.readlink(f.st_ino), ErrorKind::usage);
  CHECK_ERROR_KIND(fs.opendir(f.st_ino), ErrorKind::usage);
  CHECK_ERROR_KIND(fs.open(root_b.st_ino), ErrorKind::usage);

  mount::Options one;
  one.single = true;
  mount::Filesystem single(src, {{"aaaa", t, a}}, one);
  CHECK(names(single, mount::Filesystem::k_root) == std::vector<std::string>{"f"});
  CHECK_ERROR_KIND(mount::Filesystem(src, {}, {}), ErrorKind::usage);
}

TEST_CASE("hardlink group members share an inode whose link count is the group's size") {
  Source src;
  auto h1 = src.file("h1", {"same"});
  h1.link_group = "/a/h1";
  auto h2 = h1;
  h2.name = "h2";
  auto alone = src.file("alone", {"x"});
  alone.link_group = "/alone";  // its other links were not in the snapshot
  auto root = src.dir("", {src.dir("a", {h1}), src.dir("b", {h2}), alone, src.file("plain", {"p"})});
  mount::Options one;
  one.single = true;
  mount::Filesystem fs(src, {{"s", 0, root}}, one);
  auto a = fs.lookup(mount::Filesystem::k_root, "a");
  auto b = fs.lookup(mount::Filesystem::k_root, "b");
  auto x = fs.lookup(a.st_ino, "h1");
  auto y = fs.lookup(b.st_ino, "h2");
  CHECK(x.st_ino == y.st_ino);
  CHECK(x.st_nlink == 2);
  CHECK(fs.lookup(mount::Filesystem::k_root, "alone").st_nlink == 1);
  auto p = fs.lookup(mount::Filesystem::k_root, "plain");
  CHECK(p.st_nlink == 1);
  CHECK(p.st_ino != x.st_ino);

  // An inode lives while it is looked up: two lookups, two forgets.
  fs.forget(x.st_ino, 1);
  CHECK(fs.getattr(x.st_ino).st_ino == x.st_ino);
  fs.forget(x.st_ino, 1);
  CHECK_ERROR_KIND(fs.getattr(x.st_ino), ErrorKind::not_found);
  CHECK(fs.lookup(a.st_ino, "h1").st_ino == x.st_ino);  // the same number again
  fs.forget(mount::Filesystem::k_root, 100);  // the root stays
  CHECK(fs.getattr(mount::Filesystem::k_root).st_ino == mount::Filesystem::k_root);
}

TEST_CASE("a read fetches only the chunks of its range, and reads ahead when sequential") {
  Source src;
  std::vector<std::string> parts;
  std::string whole;
  for (int i = 0; i < 20; ++i) {
    parts.push_back(std::string(1000, static_cast<char>('a' + i)));
    whole += parts.back();
  }
  auto root = src.dir("", {src.file("big", parts)});
  mount::Options o;
  o.single = true;
  o.readahead_bytes = 3000;
  o.background = false;  // the counts below are of the reads' own fetches
  mount::Filesystem fs(src, {{"s", 0, root}}, o);
  auto big = fs.lookup(mount::Filesystem::k_root, "big");
  auto f = fs.open(big.st_ino);
  std::string buf(1500, '\0');
  auto span = std::span(reinterpret_cast<uint8_t*>(buf.data()), buf.size());

  src.asked.clear();
  CHECK(fs.read(*f, 10'500, span) == 1500);  // chunks 10 and 11; not sequential: nothing more
  CHECK(buf == whole.substr(10'500, 1500));
  CHECK(src.asked.size() == 2);

  src.asked.clear();
  CHECK(fs.read(*f, 12'000, span) == 1500);  // sequential: chunks 12, 13 and 3000 bytes ahead
  CHECK(buf == whole.substr(12'000, 1500));
  CHECK(src.asked.size() == 5);
  src.asked.clear();
  CHECK(fs.read(*f, 13'500, span) == 1500);  // cached
  CHECK(src.asked.empty());
  CHECK(fs.read(*f, 19'500, span) == 500);  // the end
  CHECK(buf.substr(0, 500) == whole.substr(19'500));
  CHECK(fs.read(*f, 20'000, span) == 0);

  // A chunk the store lacks is an integrity error.
  src.objects.erase(src.put(parts[0]));
  auto g = fs.open(big.st_ino);
  CHECK_ERROR_KIND(fs.read(*g, 0, span), ErrorKind::integrity);
}

TEST_CASE("the chunk cache stays within its bound") {
  Source src;
  std::vector<std::string> parts;
  for (int i = 0; i < 50; ++i) parts.push_back(std::string(10'000, static_cast<char>(i)));
  auto root = src.dir("", {src.file("big", parts)});
  mount::Options o;
  o.single = true;
  o.chunk_cache_bytes = 35'000;
  o.readahead_bytes = 0;
  o.background = false;
  mount::Filesystem fs(src, {{"s", 0, root}}, o);
  auto f = fs.open(fs.lookup(mount::Filesystem::k_root, "big").st_ino);
  std::string buf(4096, '\0');
  for (uint64_t off = 0; off < 500'000; off += 4096) {
    fs.read(*f, off, std::span(reinterpret_cast<uint8_t*>(buf.data()), buf.size()));
    CHECK(fs.stats().chunk_bytes <= 35'000);
  }
  CHECK(fs.stats().chunk_misses >= 50);
}

TEST_CASE("xattrs, devices and a sparse file's blocks are as stored") {
  Source src;
  auto f = src.file("f", {std::string(65536, '\0'), "data", std::string(65536, '\0')});
  f.sparse = true;
  f.xattrs = {{"security.capability", std::string("\x01\x00\x00\x02", 4)}, {"user.a", "1"}};
  auto dense = src.file("dense", {std::string(65536, '\0')});
  Entry dev;
  dev.name = "null";
  dev.kind = Kind::chardev;
  dev.mode = 0666;
  dev.rdev = makedev(1, 3);
  auto root = src.dir("", {f, dense, dev});
  mount::Options o;
  o.single = true;
  mount::Filesystem fs(src, {{"s", 0, root}}, o);
  auto st = fs.lookup(mount::Filesystem::k_root, "f");
  CHECK(st.st_size == 131076);
  CHECK(st.st_blocks == 1);  // the zero chunks are holes
  CHECK(read_all(fs, st.st_ino, 65530, 12) == std::string(6, '\0') + "data" + std::string(2, '\0'));
  CHECK(fs.lookup(mount::Filesystem::k_root, "dense").st_blocks == 128);
  CHECK(fs.listxattr(st.st_ino) == std::vector<std::string>{"security.capability", "user.a"});
  CHECK(fs.getxattr(st.st_ino, "security.capability") == std::string("\x01\x00\x00\x02", 4));
  CHECK(!fs.getxattr(st.st_ino, "user.b"));
  auto d = fs.lookup(mount::Filesystem::k_root, "null");
  CHECK(d.st_mode == (S_IFCHR | 0666));
  CHECK(d.st_rdev == makedev(1, 3));
}

TEST_CASE("sequential reads fetch the next window in the background, and get every byte") {
  Source src;
  std::vector<std::string> parts;
  std::string whole;
  for (int i = 0; i < 200; ++i) {
    parts.push_back(std::string(1000 + i, static_cast<char>(i)));
    whole += parts.back();
  }
  auto root = src.dir("", {src.file("big", parts)});
  mount::Options o;
  o.single = true;
  o.readahead_bytes = 8000;
  mount::Filesystem fs(src, {{"s", 0, root}}, o);
  auto f = fs.open(fs.lookup(mount::Filesystem::k_root, "big").st_ino);
  size_t trees = src.requests;
  src.asked.clear();
  std::string got, buf(4096, '\0');
  for (uint64_t off = 0;;) {
    size_t n = fs.read(*f, off, std::span(reinterpret_cast<uint8_t*>(buf.data()), buf.size()));
    if (n == 0) break;
    got += buf.substr(0, n);
    off += n;
  }
  CHECK(got == whole);
  std::lock_guard lock(src.mutex);
  CHECK(src.asked.size() == 200);       // each chunk once
  CHECK(src.requests - trees <= 200 / 6);  // in windows of about 7 chunks
  CHECK(fs.stats().fetches == src.requests - trees);
}

TEST_CASE("with a refresh, a snapshot committed after the mount appears, and latest follows it") {
  Source src;
  auto a = src.dir("", {src.file("f", {"one"})});
  auto b = src.dir("", {src.file("f", {"two"})});
  std::vector<mount::Snapshot> now = {{"aaaa", 1'000'000'000, a, 3, 2}};
  size_t asked = 0;
  mount::Options o;
  o.refresh_seconds = 0;  // every lookup in the layout asks
  o.refresh = [&] {
    ++asked;
    return now;
  };
  mount::Filesystem fs(src, now, o);
  auto snaps = fs.lookup(mount::Filesystem::k_root, "snapshots");
  CHECK(fs.changing(snaps.st_ino));
  CHECK(fs.changing(mount::Filesystem::k_root));
  CHECK(names(fs, snaps.st_ino) == std::vector<std::string>{"aaaa"});
  auto latest1 = fs.lookup(mount::Filesystem::k_root, "latest");
  CHECK(fs.readlink(latest1.st_ino) == "snapshots/aaaa");
  CHECK(fs.usage().bytes == 3);

  now.push_back({"bbbb", 2'000'000'000, b, 3, 2});
  CHECK(names(fs, snaps.st_ino) == std::vector<std::string>{"aaaa", "bbbb"});
  auto root_b = fs.lookup(snaps.st_ino, "bbbb");
  CHECK_FALSE(fs.changing(root_b.st_ino));  // a snapshot's own tree never changes
  CHECK(read_all(fs, fs.lookup(root_b.st_ino, "f").st_ino, 0, 10) == "two");
  auto latest2 = fs.lookup(mount::Filesystem::k_root, "latest");
  CHECK(latest2.st_ino != latest1.st_ino);  // a new link: the kernel's cached target stays right
  CHECK(fs.readlink(latest2.st_ino) == "snapshots/bbbb");
  CHECK(fs.readlink(latest1.st_ino) == "snapshots/aaaa");
  CHECK(fs.getattr(mount::Filesystem::k_root).st_mtim.tv_sec == 2);
  CHECK(names(fs, fs.lookup(mount::Filesystem::k_root, "by-date").st_ino).size() == 2);
  auto u = fs.usage();
  CHECK(u.bytes == 6);
  CHECK(u.entries == 4);
  CHECK(u.snapshots == 2);

  // An expired snapshot leaves the listing; a failed refresh (an empty list) keeps the last.
  now.erase(now.begin());
  CHECK(names(fs, snaps.st_ino) == std::vector<std::string>{"bbbb"});
  now.clear();
  CHECK(names(fs, snaps.st_ino) == std::vector<std::string>{"bbbb"});
  CHECK(asked > 5);

  // Not asked more often than refresh_seconds.
  mount::Options slow = o;
  slow.refresh_seconds = 3600;
  now = {{"aaaa", 1'000'000'000, a, 3, 2}};
  mount::Filesystem fs2(src, now, slow);
  size_t before = asked;
  auto snaps2 = fs2.lookup(mount::Filesystem::k_root, "snapshots");
  now.push_back({"bbbb", 2'000'000'000, b, 3, 2});
  CHECK(names(fs2, snaps2.st_ino) == std::vector<std::string>{"aaaa"});
  CHECK(asked == before);
  // Without a refresh nothing in the layout changes, so the kernel may keep it all.
  mount::Filesystem fixed(src, now, {});
  CHECK_FALSE(fixed.changing(mount::Filesystem::k_root));
}

TEST_CASE("hardlink group sizes are counted once per directory object, shared between snapshots") {
  Source src;
  std::vector<Entry> many;
  for (int i = 0; i < 50; ++i) many.push_back(src.dir("d" + std::to_string(i), {src.file("x", {"x"})}));
  auto big = src.dir("big", many);  // unchanged between the snapshots
  auto h1 = src.file("h1", {"same"});
  h1.link_group = "/a/h1";
  auto h2 = h1;
  h2.name = "h2";
  auto s1 = src.dir("", {src.dir("a", {h1, h2}), big});
  auto h3 = h1;
  h3.name = "h3";
  auto s2 = src.dir("", {src.dir("a", {h1, h2, h3}), big});
  mount::Filesystem fs(src, {{"s1", 1, s1}, {"s2", 2, s2}}, {});
  auto snaps = fs.lookup(mount::Filesystem::k_root, "snapshots");
  auto a1 = fs.lookup(fs.lookup(snaps.st_ino, "s1").st_ino, "a");
  auto a2 = fs.lookup(fs.lookup(snaps.st_ino, "s2").st_ino, "a");
  CHECK(fs.lookup(a1.st_ino, "h1").st_nlink == 2);
  size_t after_first = src.asked.size();
  CHECK(fs.lookup(a2.st_ino, "h1").st_nlink == 3);
  // The second snapshot's count read no directory of `big` again (at most its own root and a/).
  CHECK(src.asked.size() - after_first <= 2);
  CHECK(fs.lookup(a2.st_ino, "h3").st_nlink == 3);
}

TEST_CASE("mount: the source name escapes what would break the mount options or /proc/mounts") {
  CHECK(mount::fsname("ep-1.lab:7_x") == "mirage:ep-1.lab:7_x");
  // A server that sends a device id with a comma must not add a mount option (suid, dev).
  CHECK(mount::fsname("x,suid,dev") == "mirage:x%2Csuid%2Cdev");
  CHECK(mount::fsname("a b\nc%") == "mirage:a%20b%0Ac%25");
  CHECK(mount::fsname(std::string("\xff=", 2)) == "mirage:%FF%3D");
}
