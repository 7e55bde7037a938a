// The in-process loopback transport: the client and the endpoint flows against a Service
// in the same process, through the wire format and token authentication, on a temporary
// data directory. Enrollment, a sync on the device's own credential, what that credential
// may not do, and a restore equal to what was synced.
#include <doctest/doctest.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "libmirage/client/client.hpp"
#include "libmirage/endpoint/centralize.hpp"
#include "libmirage/endpoint/identity.hpp"
#include "libmirage/server/loopback.hpp"
#include "libmirage/server/service.hpp"
#include "libmirage/store/record.hpp"
#include "libmirage/tree/tree.hpp"
#include "libmirage/util/clock.hpp"
#include "libmirage/util/digest.hpp"
#include "libmirage/util/hex.hpp"
#include "tests/unit/check_error.hpp"
#include "tests/unit/loopback_world.hpp"

using namespace mirage;
namespace fs = std::filesystem;
using nlohmann::json;
using util::Digest;

namespace {

using World = test::LoopbackWorld;

void write(const fs::path& p, const std::string& content) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << content;
}

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// `device` accepted by `admin` on the world's server, one sync of a small tree committed.
void accept_device(World& w, client::Client& admin, const std::string& device) {
  fs::path root = w.dir / "root";
  write(root / "etc/hostname", device + "\n");
  endpoint::CentralizeOptions co;
  co.root = root;
  co.device_id = device;
  co.state_dir = w.dir / "state";
  co.threads = 1;
  endpoint::centralize(admin, co);
  admin.call("device.accept", {{"device_id", device}});
  REQUIRE(endpoint::centralize(admin, co).state == "accepted");
}

tree::Entry file_entry(const std::string& name, const std::string& content) {
  tree::Entry e;
  e.name = name;
  e.mode = 0644;
  e.size = content.size();
  e.chunks = {{util::sha256(content), content.size()}};
  return e;
}

tree::Entry dir_entry(const std::string& name, const Digest& subtree) {
  tree::Entry e;
  e.name = name;
  e.kind = tree::Kind::dir;
  e.mode = 0755;
  e.subtree = subtree;
  return e;
}

/// Commits the tree `id` as a snapshot of `device`.
void commit_tree(client::Client& admin, const std::string& device, const Digest& id) {
  admin.call("snapshot.commit", {{"device_id", device},
                                 {"tree", id.hex()},
                                 {"root", util::to_hex(tree::encode_entry(dir_entry("", id)))},
                                 {"stats", json::object()}});
}

/// Sends `records` once they pass 2 MiB (or when `now`), then empties them.
void put_records(client::Client& admin, const std::string& device, std::vector<uint8_t>& records, bool now = false) {
  if (!now && records.size() <= (2u << 20)) return;
  client::chunks_put(admin, device, records);
  records.clear();
}

}  // namespace

TEST_SUITE_BEGIN("server::LoopbackTransport");

TEST_CASE("callers are who their token says, through the wire format") {
  World w;
  auto admin = w.client(w.admin_token);
  CHECK(admin.call("server.info")["role"] == "admin");
  auto anonymous = w.client("");
  CHECK(anonymous.call("server.info")["role"] == "anonymous");
  CHECK_FALSE(anonymous.call("server.info").contains("data"));
  CHECK_ERROR_KIND(anonymous.call("token.list"), ErrorKind::permission);
  auto stranger = w.client("mat_not-a-token");
  CHECK_ERROR_KIND(stranger.call("server.info"), ErrorKind::permission);
  // A malformed request is refused as it would be over the wire.
  CHECK_ERROR_KIND(admin.call("no.such.method"), ErrorKind::usage);
}

TEST_CASE("an endpoint enrolls, syncs on its own credential, and restores what it synced") {
  World w;
  fs::path root = w.dir / "root", state = w.dir / "state";
  write(root / "etc/hostname", "loop\n");
  write(root / "home/alice/notes.txt", "remember the milk\n");
  write(root / "usr/bin/tool", std::string(300000, 'x'));
  endpoint::CentralizeOptions co;
  co.root = root;
  co.device_id = "loop-1";
  co.state_dir = state;
  co.threads = 1;
  // Unknown to the server: registered, pending.
  auto anonymous = w.client("");
  CHECK(endpoint::centralize(anonymous, co).state == "pending");
  auto admin = w.client(w.admin_token);
  admin.call("device.accept", {{"device_id", "loop-1"}});
  // Accepted: the device speaks for itself with its credential.
  std::string credential = "mdc_loop-1." + endpoint::device_secret(state);
  auto device = w.client(credential);
  auto result = endpoint::centralize(device, co);
  REQUIRE(result.state == "accepted");
  CHECK(result.stats.files >= 3);
  // Its credential reads its own CVD only and administers nothing.
  CHECK_ERROR_KIND(device.call("token.list"), ErrorKind::permission);
  CHECK_ERROR_KIND(device.call("snapshot.list", {{"device_id", "someone-else"}}), ErrorKind::permission);
  // Restore the latest snapshot and compare.
  auto snapshot = client::resolve_snapshot(device, "loop-1", "latest");
  fs::path back = w.dir / "back";
  fs::create_directories(back);
  endpoint::restore(device, snapshot, {"/"}, back, nullptr);
  CHECK(read(back / "home/alice/notes.txt") == "remember the milk\n");
  CHECK(read(back / "usr/bin/tool") == std::string(300000, 'x'));
  // A second sync of an unchanged tree sends no new file content.
  auto again = endpoint::centralize(device, co);
  CHECK(again.stats.bytes_new == 0);
}

TEST_CASE("a device's credential reads what its own snapshots reach, not another device's objects") {
  World w;
  auto admin = w.client(w.admin_token);
  // Two endpoints, each syncing on its own credential.
  auto enrol = [&](const std::string& id, const std::string& secret) {
    fs::path root = w.dir / id / "root", state = w.dir / id / "state";
    write(root / "home/u/pin.txt", secret);
    endpoint::CentralizeOptions co;
    co.root = root;
    co.device_id = id;
    co.state_dir = state;
    co.threads = 1;
    auto anonymous = w.client("");
    endpoint::centralize(anonymous, co);
    admin.call("device.accept", {{"device_id", id}});
    std::string credential = "mdc_" + id + "." + endpoint::device_secret(state);
    auto device = w.client(credential);
    REQUIRE(endpoint::centralize(device, co).state == "accepted");
    return credential;
  };
  auto a = w.client(enrol("reach-a", "4821\n"));
  auto b = w.client(enrol("reach-b", "1234\n"));
  auto tree_of = [&](const std::string& device) {
    return *Digest::from_hex(admin.call("snapshot.list", {{"device_id", device}})["snapshots"].back()["tree"].get<std::string>());
  };
  Digest a_tree = tree_of("reach-a"), b_tree = tree_of("reach-b"), a_pin = util::sha256(std::string("4821\n")),
         b_pin = util::sha256(std::string("1234\n"));
  // Its own: the tree and the file's chunk.
  CHECK_FALSE(client::chunks_get(b, std::vector<Digest>{b_tree, b_pin}).empty());
  // Another's: neither its tree nor a chunk only it holds, alone or among its own ids.
  CHECK_ERROR_KIND(client::chunks_get(b, std::vector<Digest>{a_tree}), ErrorKind::permission);
  CHECK_ERROR_KIND(client::chunks_get(b, std::vector<Digest>{b_pin, a_pin}), ErrorKind::permission);
  CHECK_ERROR_KIND(client::chunks_delta(b, std::vector<Digest>{a_pin, b_pin}), ErrorKind::permission);
  // A delta of its own chunk against another's is "no delta", not a likeness told.
  auto delta = client::chunks_delta(b, std::vector<Digest>{b_pin, a_pin});
  REQUIRE(delta.size() == 32 + 4 + 4);
  CHECK(delta[36] == 0xff);
  // The other reads its own.
  CHECK_FALSE(client::chunks_get(a, std::vector<Digest>{a_tree, a_pin}).empty());
  // Staff read everything.
  CHECK_FALSE(client::chunks_get(admin, std::vector<Digest>{a_tree, b_tree}).empty());
  // A device pins a snapshot only before an order's change, once an order: not with
  // none pending, and not twice for one.
  auto last = admin.call("snapshot.list", {{"device_id", "reach-b"}})["snapshots"].back();
  auto commit_pinned = [&] {
    return b.call("snapshot.commit",
                  {{"device_id", "reach-b"}, {"tree", last["tree"]}, {"root", last["root"]}, {"stats", json::object()},
                   {"pinned", true}})["pinned"]
        .get<bool>();
  };
  CHECK_FALSE(commit_pinned());
  admin.call("snapshot.request", {{"device_ids", {"reach-b"}}});
  CHECK(commit_pinned());
  CHECK_FALSE(commit_pinned());
}

TEST_CASE("a commit reaching objects the store lacks is refused: every one counted, the first named in walk order") {
  World w;
  auto admin = w.client(w.admin_token);
  accept_device(w, admin, "gap");
  auto latest = client::resolve_snapshot(admin, "gap", "latest");
  // "/": a-dir/ (stored, its file x's chunk is not), b-file and d-file (one chunk, not
  // stored: counted for each), c-dir/ (its tree is not stored). The walk checks /'s files
  // before it enters a subdirectory, so /b-file is the first missing, though the chunks
  // are looked up after the walk.
  auto a_dir = tree::encode(tree::Tree{{file_entry("x", "never uploaded x")}});
  Digest a_id = util::sha256(a_dir), c_id = util::sha256(std::string_view("a tree never uploaded"));
  auto top = tree::encode(tree::Tree{{dir_entry("a-dir", a_id), file_entry("b-file", "never uploaded b"),
                                      dir_entry("c-dir", c_id), file_entry("d-file", "never uploaded b")}});
  // Another "/": a-dir/ and c-dir/ only. The walk enters c-dir/ (pushed last) first, so
  // the missing tree is named, not the chunk found missing in a-dir/ after it.
  auto top2 = tree::encode(tree::Tree{{dir_entry("a-dir", a_id), dir_entry("c-dir", c_id)}});
  std::vector<uint8_t> records;
  for (const auto& object : {a_dir, top, top2}) store::append_plain(records, util::sha256(object), object, 3);
  put_records(admin, "gap", records, true);
  auto refusal = [&](const std::vector<uint8_t>& tree) -> std::string {
    try {
      commit_tree(admin, "gap", util::sha256(tree));
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::precondition);
      CHECK(e.reason() == proto::k_reason_incomplete);
      return e.what();
    }
    return "committed";
  };
  CHECK(refusal(top).find("is incomplete: 4 objects missing (first: /b-file)") != std::string::npos);
  CHECK(refusal(top2).find("is incomplete: 2 objects missing (first: tree of /c-dir)") != std::string::npos);
  CHECK(client::resolve_snapshot(admin, "gap", "latest") == latest);  // nothing committed
}

TEST_CASE("a commit's check looks chunks up a batch at a time and still names the first missing in walk order") {
  World w;
  auto admin = w.client(w.admin_token);
  accept_device(w, admin, "many");
  // /many/ holds 70,000 files of one chunk each, more than one lookup batch (65,536):
  // all stored but f65600 and f69999, in the second batch; /z-dir/ (entered first: it is
  // pushed last) lacks its tree. The first missing in walk order is the tree, then
  // /many/f65600, looked up after the first batch was.
  tree::Tree many;
  std::vector<uint8_t> records;
  for (int i = 0; i < 70000; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "f%05d", i);
    std::string content = std::string("content of ") + name;
    many.entries.push_back(file_entry(name, content));
    if (i != 65600 && i != 69999)
      store::append_plain(records, util::sha256(content),
                          std::span(reinterpret_cast<const uint8_t*>(content.data()), content.size()), 3);
    put_records(admin, "many", records);
  }
  auto objects = tree::encode_dir(std::move(many));
  objects.pieces.push_back(objects.top);
  for (const auto& o : objects.pieces) {
    store::append_plain(records, o.id, o.data, 3);
    put_records(admin, "many", records);
  }
  auto top = tree::encode(tree::Tree{{dir_entry("many", objects.top.id)}});
  auto top2 = tree::encode(
      tree::Tree{{dir_entry("many", objects.top.id), dir_entry("z-dir", util::sha256(std::string_view("no such tree")))}});
  for (const auto& object : {top, top2}) store::append_plain(records, util::sha256(object), object, 3);
  put_records(admin, "many", records, true);
  CHECK_THROWS_WITH(commit_tree(admin, "many", util::sha256(top)),
                    doctest::Contains("is incomplete: 2 objects missing (first: /many/f65600)"));
  CHECK_THROWS_WITH(commit_tree(admin, "many", util::sha256(top2)),
                    doctest::Contains("is incomplete: 3 objects missing (first: tree of /z-dir)"));
}

TEST_CASE("a revert order: queued by the help desk, carried out by the device's sync, superseded by a newer one") {
  World w;
  fs::path root = w.dir / "root", state = w.dir / "state";
  write(root / "etc/app.conf", "at s\n");
  write(root / "usr/bin/tool", std::string(200000, 't'));
  write(root / "home/alice/notes.txt", "notes at s\n");
  endpoint::CentralizeOptions co;
  co.root = root;
  co.device_id = "rev-1";
  co.state_dir = state;
  co.threads = 1;
  auto anonymous = w.client("");
  endpoint::centralize(anonymous, co);
  auto admin = w.client(w.admin_token);
  admin.call("device.accept", {{"device_id", "rev-1"}});
  auto device = w.client("mdc_rev-1." + endpoint::device_secret(state));
  std::string s = endpoint::centralize(device, co).snapshot["snapshot_id"];
  auto helpdesk = w.client(admin.call("token.create", {{"name", "hd2"}, {"role", "helpdesk"}})["token"]);

  // Refused: a device's own credential, an unknown snapshot, a bad mode.
  CHECK_ERROR_KIND(device.call("order.revert", {{"device", "rev-1"}, {"snapshot", s}}), ErrorKind::permission);
  CHECK_ERROR_KIND(helpdesk.call("order.revert", {{"device", "rev-1"}, {"snapshot", "ffffffffffffffff"}}), ErrorKind::not_found);
  CHECK_ERROR_KIND(helpdesk.call("order.revert", {{"device", "rev-1"}, {"snapshot", s}, {"mode", "all"}}), ErrorKind::usage);

  fs::remove(root / "usr/bin/tool");
  write(root / "etc/app.conf", "changed\n");
  write(root / "home/alice/notes.txt", "notes now\n");
  endpoint::centralize(device, co);
  auto first = helpdesk.call("order.revert", {{"device", "rev-1"}, {"snapshot", s}, {"mode", "full"}})["orders"][0];
  auto order = helpdesk.call("order.revert", {{"device", "rev-1"}, {"snapshot", s}})["orders"][0];
  CHECK(order["spec"]["type"] == "revert");
  CHECK(order["spec"]["mode"] == "system");
  CHECK(order["spec"]["snapshot_id"] == s);
  CHECK(admin.call("order.get", {{"order_id", first["order_id"]}})["state"] == "superseded");

  auto result = endpoint::centralize(device, co);
  REQUIRE(result.order.value("order_id", "") == order["order_id"]);
  CHECK(result.order["mode"] == "system");
  CHECK(read(root / "usr/bin/tool") == std::string(200000, 't'));
  CHECK(read(root / "etc/app.conf") == "at s\n");
  CHECK(read(root / "home/alice/notes.txt") == "notes now\n");  // the user area stays
  CHECK(admin.call("order.get", {{"order_id", order["order_id"]}})["state"] == "done");
  // The state before was kept by a pinned snapshot.
  auto before = client::resolve_snapshot(admin, "rev-1", result.protected_by["snapshot_id"].get<std::string>());
  CHECK(before["pinned"] == true);
}

TEST_CASE("a dynamic collection matches an inventory array field as driver profiles do: any element") {
  World w;
  auto anonymous = w.client("");
  nlohmann::json inv = {{"os_id", "debian"}, {"pci", {"8086:1234", "10de:abcd"}}, {"cores", 8}};
  anonymous.call("device.register", {{"device_id", "gpu-1"}, {"hostname", "gpu-1"}, {"inventory", inv}});
  anonymous.call("device.register", {{"device_id", "plain-1"}, {"hostname", "plain-1"}, {"inventory", {{"os_id", "debian"}}}});
  auto admin = w.client(w.admin_token);
  admin.call("device.accept", {{"device_id", "gpu-1"}});
  admin.call("device.accept", {{"device_id", "plain-1"}});
  auto members = [&](const nlohmann::json& field) {
    admin.call("collection.set", {{"name", "c"}, {"match", {{"inventory", field}}}, {"replace", true}});
    return admin.call("collection.get", {{"name", "c"}})["members"];
  };
  CHECK(members({{"pci", "10de:*"}}) == nlohmann::json{"gpu-1"});
  CHECK(members({{"pci", "8086:1234"}}) == nlohmann::json{"gpu-1"});
  CHECK(members({{"pci", "1002:*"}}) == nlohmann::json::array());
  CHECK(members({{"os_id", "deb*"}}) == nlohmann::json{"gpu-1", "plain-1"});
  // A key no endpoint reports would match nothing, ever: refused, naming the known ones.
  CHECK_ERROR_KIND(members({{"cores", "8"}}), ErrorKind::usage);
  // An existing name is replaced only when asked.
  CHECK_ERROR_KIND(admin.call("collection.set", {{"name", "c"}, {"match", {{"os", "x"}}}}), ErrorKind::precondition);
}

TEST_SUITE_END();

TEST_SUITE_BEGIN("util::ManualClock");

TEST_CASE("a token made to expire stops working once the test clock passes its end") {
  World w;
  util::ManualClock clock(*util::parse_time_lower("2026-06-01T12:00:00Z"));
  CHECK(util::now_ns() == clock.now());
  auto admin = w.client(w.admin_token);
  auto made = admin.call("token.create", {{"name", "helpdesk-1"}, {"role", "helpdesk"}, {"expires_seconds", 86400}});
  CHECK(made["expires"] == "2026-06-02T12:00:00Z");
  auto helpdesk = w.client(made["token"].get<std::string>());
  CHECK(helpdesk.call("server.info")["role"] == "helpdesk");
  clock.advance(int64_t(86399) * 1000000000);
  CHECK(helpdesk.call("server.info")["role"] == "helpdesk");
  clock.advance(int64_t(2) * 1000000000);
  CHECK_ERROR_KIND(helpdesk.call("server.info"), ErrorKind::permission);
  // One manual clock at a time.
  CHECK_ERROR_KIND(util::ManualClock(0), ErrorKind::precondition);
}

TEST_SUITE_END();
