// The endpoint agent in one process: endpoint::centralize, apply_order, recovery and
// restore over server::LoopbackTransport, the server's packs on an in-memory volume
// (mem://). A scan, upload and commit; an order received and applied; a crash point in
// the apply (a test hook that throws where cmd/ would _exit) followed by the recovery
// run, checked file by file; a restore equal to its source.
#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "libmirage/client/client.hpp"
#include "libmirage/endpoint/centralize.hpp"
#include "libmirage/endpoint/identity.hpp"
#include "libmirage/endpoint/layers.hpp"
#include "libmirage/layer/apply.hpp"
#include "libmirage/server/loopback.hpp"
#include "libmirage/server/service.hpp"
#include "libmirage/store/volume.hpp"
#include "tests/unit/check_error.hpp"
#include "tests/unit/loopback_world.hpp"

using namespace mirage;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

void write(const fs::path& p, const std::string& content, fs::perms mode = fs::perms(0644)) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary | std::ios::trunc) << content;
  fs::permissions(p, mode);
}

/// What a tree holds, entry by entry: kind, mode, size, content (files), target (links),
/// and (with `times`) the mtime, for comparing two trees file by file.
std::map<std::string, std::string> listing(const fs::path& root, bool times) {
  std::map<std::string, std::string> out;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    struct stat st;
    REQUIRE(::lstat(it->path().c_str(), &st) == 0);
    std::ostringstream row;
    row << std::oct << st.st_mode << std::dec << " size=" << (S_ISDIR(st.st_mode) ? 0 : st.st_size);
    if (times) row << " mtime=" << st.st_mtim.tv_sec << "." << st.st_mtim.tv_nsec;
    if (S_ISREG(st.st_mode)) {
      std::ifstream in(it->path(), std::ios::binary);
      std::stringstream s;
      s << in.rdbuf();
      row << " content=" << s.str();
    } else if (S_ISLNK(st.st_mode)) {
      row << " -> " << fs::read_symlink(it->path()).string();
    }
    out["/" + fs::relative(it->path(), root).string()] = row.str();
  }
  return out;
}

/// Thrown by the test crash hook: the apply stops where a crash would have killed it.
struct Crash {};

/// A server whose packs live in memory (its file volume is read-only), an admin, and one
/// endpoint root with its state directory.
struct World : test::LoopbackWorld {
  std::string volume;
  World() {
    volume = "mem://agent-" + dir.filename().string();
    service->ensure_volume(volume);
    auto admin = client(admin_token);
    json volumes = admin.call("volume.list")["volumes"];  // a range-for over a temporary's member would dangle
    for (const auto& v : volumes)
      if (v["path"] != volume) admin.call("volume.set", {{"volume_id", v["volume_id"]}, {"read_only", true}});
  }
  fs::path root() const { return dir / "root"; }
  fs::path state() const { return dir / "state"; }
  endpoint::CentralizeOptions options() const {
    endpoint::CentralizeOptions co;
    co.root = root();
    co.device_id = "agent-1";
    co.state_dir = state();
    co.threads = 1;
    return co;
  }
  /// Registers and accepts the endpoint; returns a client on its own credential.
  client::Client enroll() {
    auto anonymous = client("");
    REQUIRE(endpoint::centralize(anonymous, options()).state == "pending");
    client(admin_token).call("device.accept", {{"device_id", "agent-1"}});
    return client("mdc_agent-1." + endpoint::device_secret(state()));
  }
  /// Captures base layer `name` from `from` (as mirage-capture base does) and queues it
  /// for the endpoint; returns the order.
  json assign_base(const std::string& name, const fs::path& from) {
    auto admin = client(admin_token);
    endpoint::CaptureOptions co;
    co.kind = layer::LayerKind::base;
    co.name = name;
    co.root = from;
    co.threads = 1;
    endpoint::capture(admin, co);
    json created = admin.call("order.create", {{"device_ids", {"agent-1"}}, {"type", "assign"}, {"base", name}});
    REQUIRE(created["orders"].size() == 1);
    return created["orders"][0];
  }
};

/// The endpoint as it starts: a file the layer replaces, one only the endpoint has, a
/// user's file.
void endpoint_files(const fs::path& root) {
  write(root / "etc/hostname", "agent\n");
  write(root / "usr/share/app/a.txt", "the endpoint's old a\n");
  write(root / "usr/local/keep.txt", "mine\n");
  write(root / "home/u/notes.txt", "remember the milk\n");
}

/// The base layer: several files (so the apply has several stage and commit steps).
void layer_files(const fs::path& dir) {
  write(dir / "usr/share/app/a.txt", "a from the layer\n");
  write(dir / "usr/share/app/b.txt", std::string(200000, 'b'));
  write(dir / "usr/share/app/c.txt", "c\n");
  write(dir / "usr/bin/app", "#!/bin/sh\necho app\n", fs::perms(0755));
  write(dir / "etc/app.conf", "setting = 1\n");
  fs::create_symlink("app", dir / "usr/bin/app-link");
}

/// After the layer is applied: its files as it has them, the endpoint's own kept.
void check_applied(const fs::path& root, const fs::path& layer) {
  auto want = listing(layer, false), got = listing(root, false);
  for (const auto& [path, row] : want) {
    INFO(path);
    REQUIRE(got.count(path));
    if (fs::is_directory(layer / path.substr(1))) continue;  // directories may differ in mode
    CHECK(got[path] == row);
  }
  CHECK(got["/usr/local/keep.txt"].find("content=mine\n") != std::string::npos);
  CHECK(got["/home/u/notes.txt"].find("content=remember the milk\n") != std::string::npos);
  for (const auto& [path, row] : got) CHECK_MESSAGE(path.find(".mirage-new-") == std::string::npos, path);
}

}  // namespace

TEST_SUITE_BEGIN("endpoint agent");

TEST_CASE("a scan uploads to the in-memory volume and commits a snapshot the server can serve") {
  World w;
  endpoint_files(w.root());
  auto device = w.enroll();
  auto result = endpoint::centralize(device, w.options());
  REQUIRE(result.state == "accepted");
  CHECK(result.stats.files == 4);
  CHECK(result.stats.bytes_new > 0);
  CHECK(result.snapshot.contains("snapshot_id"));
  auto snapshots = device.call("snapshot.list", {{"device_id", "agent-1"}})["snapshots"];
  REQUIRE(snapshots.size() == 1);
  CHECK(snapshots[0]["snapshot_id"] == result.snapshot["snapshot_id"]);
  // The packs are in memory; the read-only file volume got none.
  CHECK_FALSE(store::open_volume(w.volume)->list().empty());
  json volumes = w.client(w.admin_token).call("volume.list")["volumes"];
  for (const auto& v : volumes)
    if (v["path"] != w.volume) CHECK(v["packs"] == 0);
  // Nothing changed: the next sync sends no content, and its snapshot is the same tree.
  auto again = endpoint::centralize(device, w.options());
  CHECK(again.stats.bytes_new == 0);
  CHECK(again.snapshot["tree"] == result.snapshot["tree"]);
}

TEST_CASE("an order is received, its layer applied, reported done, and the state after it snapshotted") {
  World w;
  endpoint_files(w.root());
  fs::path layer = w.dir / "layer";
  layer_files(layer);
  auto device = w.enroll();
  REQUIRE(endpoint::centralize(device, w.options()).order.is_null());
  json order = w.assign_base("base", layer);
  auto result = endpoint::centralize(device, w.options());
  REQUIRE(result.state == "accepted");
  REQUIRE(result.order.is_object());
  CHECK(result.order["order_id"] == order["order_id"]);
  CHECK(result.protected_by.contains("snapshot_id"));  // the pinned snapshot before the apply
  CHECK(result.snapshot["snapshot_id"] != result.protected_by["snapshot_id"]);
  check_applied(w.root(), layer);
  CHECK_FALSE(fs::exists(w.state() / "apply.journal"));
  auto admin = w.client(w.admin_token);
  CHECK(admin.call("order.get", {{"order_id", order["order_id"]}})["state"] == "done");
  CHECK(admin.call("device.status", {{"device_id", "agent-1"}})["given"]["layers"] == json{"base@1"});
  // Nothing left to do: the next sync carries out no order.
  CHECK(endpoint::centralize(device, w.options()).order.is_null());
}

TEST_CASE("a crash during the apply is rolled back (staging) or carried forward (commit) by the recovery run") {
  for (const char* point : {"apply_stage", "apply_step"}) {
    for (size_t at : {size_t(0), size_t(2)}) {
      CAPTURE(point);
      CAPTURE(at);
      World w;
      endpoint_files(w.root());
      fs::path layer = w.dir / "layer";
      layer_files(layer);
      auto device = w.enroll();
      REQUIRE(endpoint::centralize(device, w.options()).order.is_null());
      auto before = listing(w.root(), true);
      json order = w.assign_base("base", layer);

      auto co = w.options();
      bool crashed = false;
      co.crash_point = [&](std::string_view p, size_t i) {
        if (p == point && i == at) {
          crashed = true;
          throw Crash{};
        }
      };
      CHECK_THROWS_AS(endpoint::centralize(device, co), Crash);
      REQUIRE(crashed);
      REQUIRE(fs::exists(w.state() / "apply.journal"));
      // The crash reported nothing: the order is still the endpoint's to carry out.
      CHECK(w.client(w.admin_token).call("order.get", {{"order_id", order["order_id"]}})["state"] != "done");

      std::string recovered = layer::recover(w.root(), w.state() / "apply.journal");
      CHECK_FALSE(fs::exists(w.state() / "apply.journal"));
      if (std::string_view(point) == "apply_stage") {
        CHECK(recovered == "rolled_back");
        // Every entry as it was, times included, and no temporary left.
        auto after = listing(w.root(), true);
        for (const auto& [path, row] : before) {
          INFO(path);
          CHECK(after[path] == row);
        }
        for (const auto& [path, row] : after) CHECK_MESSAGE(before.count(path), "left behind: " << path);
      } else {
        CHECK(recovered == "resumed");
        check_applied(w.root(), layer);
      }
      // The next sync carries the order out (again, or for the first time) and reports it.
      auto result = endpoint::centralize(device, w.options());
      CHECK(result.order["order_id"] == order["order_id"]);
      check_applied(w.root(), layer);
      CHECK(w.client(w.admin_token).call("order.get", {{"order_id", order["order_id"]}})["state"] == "done");
    }
  }
}

TEST_CASE("the restorer restores a snapshot equal to its source, entry by entry") {
  World w;
  endpoint_files(w.root());
  write(w.root() / "usr/bin/run", "#!/bin/sh\n", fs::perms(0750));
  write(w.root() / "var/empty.txt", "");
  write(w.root() / "var/big.bin", std::string(1 << 20, 'z') + "tail");
  fs::create_symlink("../usr/bin/run", w.root() / "var/run-link");
  fs::create_directories(w.root() / "srv/empty-dir");
  fs::permissions(w.root() / "srv/empty-dir", fs::perms(0711));
  auto device = w.enroll();
  REQUIRE(endpoint::centralize(device, w.options()).state == "accepted");
  auto snapshot = client::resolve_snapshot(device, "agent-1", "latest");
  fs::path back = w.dir / "back";
  fs::create_directories(back);
  auto stats = endpoint::restore(device, snapshot, {"/"}, back, nullptr);
  CHECK(stats.wire_bytes > 0);
  auto source = listing(w.root(), true), restored = listing(back, true);
  for (const auto& [path, row] : source) {
    INFO(path);
    CHECK(restored[path] == row);
  }
  CHECK(restored.size() == source.size());
}

TEST_SUITE_END();
