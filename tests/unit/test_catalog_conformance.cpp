// The catalog conformance suite: every operation of catalog::Catalog, its ChunkIndex,
// its MarkSet, its GC lock and its transactions, against each backend in `Backends`.
// A new backend (PostgreSQL, a later issue) adds a struct like SqliteBackend and its name
// to that list; nothing else here changes.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <tuple>

#include "libmirage/catalog/catalog.hpp"
#include "libmirage/util/clock.hpp"
#include "libmirage/util/error.hpp"
#include "tests/unit/check_error.hpp"

using namespace mirage;
using catalog::Catalog;
using catalog::DeviceState;
using catalog::Transaction;
using util::Digest;
namespace fs = std::filesystem;

namespace {

/// A catalog backend under test: open() gives a new connection to one store, empty at
/// first (a second call is another server thread or process on the same store).
struct SqliteBackend {
  fs::path dir;
  SqliteBackend() {
    char tmpl[] = "/tmp/mirage-catalog-XXXXXX";
    dir = ::mkdtemp(tmpl);
  }
  ~SqliteBackend() { fs::remove_all(dir); }
  std::unique_ptr<Catalog> open() { return catalog::open((dir / "catalog.db").string(), true); }
};

using Backends = std::tuple<SqliteBackend>;

constexpr int64_t k_s = 1000000000;
constexpr int64_t k_t0 = 1800000000 * k_s;  // 2027-01-15

Digest id_of(const std::string& s) { return util::sha256(s); }

catalog::Device device(const std::string& id, DeviceState state = DeviceState::pending, int64_t at = k_t0) {
  catalog::Device d;
  d.id = id;
  d.state = state;
  d.hostname = id + ".example";
  d.inventory = {{"os", "debian"}};
  d.registered_at = at;
  d.last_seen = at;
  return d;
}

catalog::Snapshot snapshot(const std::string& id, const std::string& dev, int64_t at, const std::string& tree) {
  catalog::Snapshot s;
  s.id = id;
  s.device = dev;
  s.tree = id_of(tree);
  s.root = {1, 2, 3, uint8_t(id.size())};
  s.created_at = at;
  s.stats = {{"files", 3}};
  return s;
}

catalog::ChunkLocation at(int64_t pack, uint64_t offset, uint32_t stored = 100) {
  return {pack, offset, stored, stored * 2, 1};
}

std::vector<std::string> event_types(const std::vector<nlohmann::json>& events) {
  std::vector<std::string> out;
  for (const auto& e : events) out.push_back(e["type"]);
  return out;
}

}  // namespace

TYPE_TO_STRING_AS("sqlite", SqliteBackend);

TEST_SUITE_BEGIN("catalog conformance");

TEST_CASE_TEMPLATE_DEFINE("catalog conformance: devices", B, devices) {
  util::ManualClock clock(k_t0);
  B backend;
  auto cat = backend.open();
  CHECK_FALSE(cat->device("a"));
  CHECK(cat->devices(std::nullopt).empty());
  cat->add_device(device("b", DeviceState::pending, k_t0 + 2));
  cat->add_device(device("a", DeviceState::pending, k_t0 + 1));
  CHECK_THROWS_AS(cat->add_device(device("a")), Error);  // an id is registered once

  auto a = cat->device("a");
  REQUIRE(a);
  CHECK(a->state == DeviceState::pending);
  CHECK_FALSE(a->reference);
  CHECK(a->hostname == "a.example");
  CHECK(a->policy == "default");
  CHECK(a->inventory == nlohmann::json{{"os", "debian"}});
  CHECK(a->registered_at == k_t0 + 1);
  CHECK(a->tags.empty());
  CHECK(a->volume == 0);

  auto all = cat->devices(std::nullopt);
  REQUIRE(all.size() == 2);
  CHECK(all[0].id == "a");  // by registration time
  CHECK(all[1].id == "b");

  cat->set_device_state("a", DeviceState::accepted, true);
  cat->set_device_policy("a", "kiosks");
  cat->set_device_tags("a", {"lobby", "berlin"});
  cat->set_device_volume("a", 3);
  clock.advance(5 * k_s);
  cat->touch_device("a", "a2.example", {{"os", "fedora"}});
  a = cat->device("a");
  REQUIRE(a);
  CHECK(a->state == DeviceState::accepted);
  CHECK(a->reference);
  CHECK(a->policy == "kiosks");
  CHECK(a->tags == std::vector<std::string>{"lobby", "berlin"});
  CHECK(a->volume == 3);
  CHECK(a->hostname == "a2.example");
  CHECK(a->inventory == nlohmann::json{{"os", "fedora"}});
  CHECK(a->last_seen == k_t0 + 5 * k_s);
  CHECK(a->registered_at == k_t0 + 1);

  cat->set_device_state("b", DeviceState::rejected, false);
  CHECK(cat->devices(DeviceState::accepted).size() == 1);
  CHECK(cat->devices(DeviceState::rejected).at(0).id == "b");
  CHECK(cat->devices(DeviceState::pending).empty());
  CHECK(cat->device_count(DeviceState::accepted) == 1);
  CHECK(cat->device_count(DeviceState::rejected) == 1);
  CHECK(cat->device_count(DeviceState::pending) == 0);

  SUBCASE("a name, activity and last syncs") {
    CHECK(a->name.empty());
    cat->set_device_name("a", "kiosk-1");
    CHECK(cat->device("a")->name == "kiosk-1");
    CHECK(cat->devices(std::nullopt)[0].name == "kiosk-1");
    CHECK(cat->device_activity().empty());
    CHECK(cat->last_syncs(DeviceState::accepted) == std::vector<int64_t>{0});  // never
    cat->add_snapshot(snapshot("s1", "a", k_t0 + 10, "t1"));
    auto pinned = snapshot("s2", "a", k_t0 + 30, "t2");
    pinned.pinned = true;
    cat->add_snapshot(pinned);
    cat->add_snapshot(snapshot("s3", "a", k_t0 + 20, "t3"));
    cat->add_order({"o1", "a", {{"kind", "apply"}}, "pending", k_t0, 0, nlohmann::json::object()});
    cat->add_order({"o2", "a", {{"kind", "apply"}}, "done", k_t0, 0, nlohmann::json::object()});
    cat->add_order({"o3", "b", {{"kind", "apply"}}, "pending", k_t0, 0, nlohmann::json::object()});
    cat->set_given("a", {{"layers", {"base@2", "app@1"}}});
    auto act = cat->device_activity();
    REQUIRE(act.count("a"));
    CHECK(act["a"].last_snapshot == "s2");  // the newest by time, not by insertion
    CHECK(act["a"].last_sync == k_t0 + 30);
    CHECK(act["a"].snapshots == 3);
    CHECK(act["a"].pinned == 1);
    CHECK(act["a"].pending_orders == 1);
    CHECK(act["a"].layers == std::vector<std::string>{"base@2", "app@1"});
    CHECK(act["b"].last_sync == 0);
    CHECK(act["b"].pending_orders == 1);
    CHECK(cat->last_syncs(DeviceState::accepted) == std::vector<int64_t>{k_t0 + 30});
    CHECK(cat->last_syncs(DeviceState::rejected) == std::vector<int64_t>{0});
  }

  SUBCASE("delete_device forgets everything of that device, and only of it") {
    for (const char* id : {"a", "b"}) {
      std::string d = id;
      cat->add_snapshot(snapshot("s-" + d, d, k_t0, "tree-" + d));
      cat->add_order({"o-" + d, d, {{"kind", "apply"}}, "pending", k_t0, 0, nlohmann::json::object()});
      cat->set_given(d, {{"layers", {d}}});
      cat->set_capture(d, "s-" + d);
      cat->set_migration_check(d, {{"device", d}});
      cat->set_device_credential(d, "hash-" + d);
      cat->start_cvd(d, "provision");
      cat->touch_upload(d);
    }
    {
      Transaction tx(*cat);
      cat->delete_device("a");
      tx.commit();
    }
    CHECK_FALSE(cat->device("a"));
    CHECK(cat->snapshots("a").empty());
    CHECK(cat->orders("a", "").empty());
    CHECK(cat->given("a") == nlohmann::json::object());
    CHECK_FALSE(cat->capture("a"));
    CHECK_FALSE(cat->migration_check("a"));
    CHECK_FALSE(cat->device_credential("a"));
    CHECK(cat->cvds("a").empty());
    CHECK(cat->uploads_in_flight(0).count == 1);
    REQUIRE(cat->device("b"));
    CHECK(cat->snapshots("b").size() == 1);
    CHECK(cat->orders("b", "").size() == 1);
    CHECK(cat->capture("b") == "s-b");
    CHECK(cat->migration_check("b")->first == nlohmann::json{{"device", "b"}});
    CHECK(cat->device_credential("b") == "hash-b");
    CHECK(cat->cvds("b").size() == 1);
  }

  SUBCASE("move_cvd moves snapshots, CVD history, assignment and finished orders; pending orders stay") {
    cat->add_device(device("c"));
    cat->add_snapshot(snapshot("s1", "a", k_t0, "t1"));
    cat->add_snapshot(snapshot("s2", "a", k_t0 + 1, "t2"));
    cat->add_snapshot(snapshot("s-b", "b", k_t0, "tb"));
    cat->add_order({"o-done", "a", {{"type", "assign"}}, "done", k_t0, 0, nlohmann::json::object()});
    cat->add_order({"o-wait", "a", {{"type", "assign"}}, "pending", k_t0 + 1, 0, nlohmann::json::object()});
    cat->set_given("a", {{"layers", {"base@1"}}});
    cat->set_given("c", {{"layers", {"own@1"}}});
    cat->start_cvd("a", "provision");
    cat->set_device_credential("a", "hash-a");
    {
      Transaction tx(*cat);
      cat->move_cvd("a", "c");
      cat->set_device_replaced("a", "c");
      tx.commit();
    }
    CHECK(cat->snapshots("a").empty());
    auto moved = cat->snapshots("c");
    REQUIRE(moved.size() == 2);
    CHECK(moved[0].id == "s1");
    CHECK(moved[1].device == "c");
    CHECK(cat->snapshots("b").size() == 1);
    CHECK(cat->given("c") == nlohmann::json{{"layers", {"base@1"}}});
    CHECK(cat->given("a") == nlohmann::json::object());
    CHECK(cat->cvds("c").size() == 1);
    CHECK(cat->cvds("a").empty());
    CHECK(cat->orders("c", "").size() == 1);
    CHECK(cat->orders("a", "pending").size() == 1);
    auto old = cat->device("a");
    REQUIRE(old);
    CHECK(old->state == DeviceState::replaced);
    CHECK(old->replaced_by == "c");
    CHECK(cat->device_credential("a") == "hash-a");  // kept: its next sync is told it was replaced
    CHECK(cat->devices(DeviceState::replaced).size() == 1);
    CHECK(cat->device_count(DeviceState::replaced) == 1);
  }

  SUBCASE("a waiting re-enrolment: one per device, replaced, listed oldest first, deleted with its device") {
    CHECK_FALSE(cat->reenrolment("a"));
    catalog::Reenrolment r{"a", "hash-1", "new-a", {{"os", "debian"}}, k_t0 + 5, k_t0 + 5, 0, ""};
    cat->set_reenrolment(r);
    cat->set_reenrolment({"b", "hash-b", "new-b", nlohmann::json::object(), k_t0 + 1, k_t0 + 1, 0, ""});
    r.contested = 2;
    r.contender_hash = "hash-2";
    r.last_seen = k_t0 + 9;
    cat->set_reenrolment(r);
    auto got = cat->reenrolment("a");
    REQUIRE(got);
    CHECK(got->hash == "hash-1");
    CHECK(got->hostname == "new-a");
    CHECK(got->inventory == nlohmann::json{{"os", "debian"}});
    CHECK(got->requested_at == k_t0 + 5);
    CHECK(got->last_seen == k_t0 + 9);
    CHECK(got->contested == 2);
    CHECK(got->contender_hash == "hash-2");
    auto waiting = cat->reenrolments();
    REQUIRE(waiting.size() == 2);
    CHECK(waiting[0].device == "b");
    cat->delete_reenrolment("b");
    CHECK_FALSE(cat->reenrolment("b"));
    {
      Transaction tx(*cat);
      cat->delete_device("a");
      tx.commit();
    }
    CHECK(cat->reenrolments().empty());
  }
}

TEST_CASE_TEMPLATE_DEFINE("catalog conformance: snapshots", B, snapshots) {
  B backend;
  auto cat = backend.open();
  cat->add_device(device("a"));
  cat->add_device(device("b"));
  cat->add_snapshot(snapshot("s2", "a", k_t0 + 2, "t2"));
  cat->add_snapshot(snapshot("s1", "a", k_t0 + 1, "t1"));
  auto pinned = snapshot("s3", "b", k_t0 + 3, "t3");
  pinned.pinned = true;
  cat->add_snapshot(pinned);
  CHECK_THROWS_AS(cat->add_snapshot(snapshot("s1", "a", k_t0, "t1")), Error);

  auto of_a = cat->snapshots("a");
  REQUIRE(of_a.size() == 2);
  CHECK(of_a[0].id == "s1");  // oldest first
  CHECK(of_a[1].id == "s2");
  CHECK(of_a[0].device == "a");
  CHECK(of_a[0].tree == id_of("t1"));
  CHECK(of_a[0].root == std::vector<uint8_t>{1, 2, 3, 2});
  CHECK(of_a[0].created_at == k_t0 + 1);
  CHECK(of_a[0].stats == nlohmann::json{{"files", 3}});
  CHECK_FALSE(of_a[0].pinned);
  CHECK(cat->snapshots("b").at(0).pinned);
  CHECK(cat->snapshots("nobody").empty());

  auto all = cat->all_snapshots();
  REQUIRE(all.size() == 3);
  CHECK(all[0].id == "s1");
  CHECK(all[2].id == "s3");

  auto one = cat->snapshot("s3");
  REQUIRE(one);
  CHECK(one->device == "b");
  CHECK(one->pinned);
  CHECK(one->tree == id_of("t3"));
  CHECK_FALSE(cat->snapshot("never"));

  cat->delete_snapshot("s1");
  cat->delete_snapshot("never");  // absent: nothing happens
  CHECK(cat->snapshots("a").size() == 1);
  CHECK(cat->all_snapshots().size() == 2);
}

TEST_CASE_TEMPLATE_DEFINE("catalog conformance: volumes and packs", B, packs) {
  util::ManualClock clock(k_t0);
  B backend;
  auto cat = backend.open();
  CHECK(cat->volumes().empty());
  int64_t v1 = cat->add_volume("file:///srv/v1");
  int64_t v2 = cat->add_volume("mem://v2");
  CHECK(v1 != v2);
  cat->set_volume_read_only(v2, true);
  auto vols = cat->volumes();
  REQUIRE(vols.size() == 2);
  CHECK(vols[0].id == v1);
  CHECK(vols[0].path == "file:///srv/v1");
  CHECK_FALSE(vols[0].read_only);
  CHECK(vols[1].read_only);

  CHECK(cat->packs().empty());
  CHECK_FALSE(cat->pack(1));
  int64_t p1 = cat->add_pack("aaaa", v1);
  int64_t p2 = cat->add_pack("bbbb", v2);
  CHECK(p2 > p1);
  CHECK_THROWS_AS(cat->add_pack("aaaa", v1), Error);  // names are unique
  auto p = cat->pack(p1);
  REQUIRE(p);
  CHECK(p->name == "aaaa");
  CHECK(p->volume == v1);
  CHECK(p->size == 0);
  CHECK(p->retired_at == 0);
  CHECK(cat->packs().size() == 2);
  CHECK(cat->packs()[1].id == p2);

  cat->set_pack_size(p1, 1000, k_t0 + 5);
  CHECK(cat->pack(p1)->size == 1000);

  // pack_usage: what GC weighs.
  cat->seal_pack(p2);
  REQUIRE(cat->add_chunks(std::vector<std::pair<Digest, catalog::ChunkLocation>>{{id_of("x"), at(p1, 8, 100)},
                                                                                 {id_of("y"), at(p1, 200, 50)}},
                          p1, 300));
  auto usage = cat->pack_usage();
  REQUIRE(usage.size() == 2);
  CHECK(usage[0].id == p1);
  CHECK(usage[0].name == "aaaa");
  CHECK(usage[0].size == 300);
  CHECK_FALSE(usage[0].sealed);
  CHECK(usage[0].written_at == k_t0);  // add_chunks writes it
  CHECK_FALSE(usage[0].read_only);
  CHECK(usage[0].live_chunks == 2);
  CHECK(usage[0].live_stored == 150);
  CHECK(usage[1].sealed);
  CHECK(usage[1].read_only);  // from its volume
  CHECK(usage[1].live_chunks == 0);
  CHECK(usage[1].live_stored == 0);

  // Retiring: only at the size GC saw, only once.
  CHECK_FALSE(cat->retire_pack(p1, 299, k_t0 + 9));
  CHECK(cat->pack(p1)->retired_at == 0);
  CHECK(cat->retire_pack(p1, 300, k_t0 + 9));
  CHECK_FALSE(cat->retire_pack(p1, 300, k_t0 + 10));
  CHECK(cat->pack(p1)->retired_at == k_t0 + 9);
  CHECK(cat->packs()[0].retired_at == k_t0 + 9);
  CHECK(cat->pack_usage()[0].retired_at == k_t0 + 9);

  // Ids are never given twice, even after the newest pack is deleted.
  cat->delete_pack(p2);
  CHECK_FALSE(cat->pack(p2));
  CHECK(cat->add_pack("cccc", v1) > p2);
}

TEST_CASE_TEMPLATE_DEFINE("catalog conformance: the chunk index", B, chunk_index) {
  B backend;
  auto cat = backend.open();
  auto& index = cat->chunks();
  int64_t v = cat->add_volume("mem://v");
  int64_t p1 = cat->add_pack("p1", v);
  int64_t p2 = cat->add_pack("p2", v);

  CHECK_FALSE(index.find_chunk(id_of("a")));
  CHECK(index.chunk_count() == 0);
  std::vector<std::pair<Digest, catalog::ChunkLocation>> first{{id_of("b"), at(p1, 208, 40)},
                                                               {id_of("a"), at(p1, 8, 200)}};
  REQUIRE(index.add_chunks(first, p1, 256));
  CHECK(cat->pack(p1)->size == 256);
  auto a = index.find_chunk(id_of("a"));
  REQUIRE(a);
  CHECK(a->pack == p1);
  CHECK(a->offset == 8);
  CHECK(a->stored == 200);
  CHECK(a->raw == 400);
  CHECK(a->codec == 1);
  CHECK(cat->find_chunk(id_of("b"))->offset == 208);  // the Catalog's shorthand

  // An id indexed already keeps its first location.
  REQUIRE(cat->add_chunks(std::vector<std::pair<Digest, catalog::ChunkLocation>>{{id_of("a"), at(p2, 8, 200)},
                                                                                 {id_of("c"), at(p2, 208, 10)}},
                          p2, 218));
  CHECK(index.find_chunk(id_of("a"))->pack == p1);
  CHECK(index.find_chunk(id_of("c"))->pack == p2);
  CHECK(index.chunk_count() == 3);
  // Many at once: answers in the order asked, an id asked twice answered twice.
  std::vector<Digest> asked{id_of("c"), id_of("x"), id_of("a"), id_of("c"), id_of("b"), id_of("y")};
  auto found = index.find_chunks(asked);
  REQUIRE(found.size() == asked.size());
  REQUIRE(found[0]);
  CHECK(found[0]->pack == p2);
  CHECK_FALSE(found[1]);
  REQUIRE(found[2]);
  CHECK(found[2]->offset == 8);
  REQUIRE(found[3]);
  CHECK(found[3]->offset == 208);
  CHECK(found[3]->pack == p2);
  REQUIRE(found[4]);
  CHECK(found[4]->offset == 208);
  CHECK(found[4]->pack == p1);
  CHECK_FALSE(found[5]);
  CHECK(index.find_chunks({}).empty());
  CHECK(index.pack_chunk_count(p1) == 2);
  CHECK(index.pack_chunk_count(p2) == 1);

  std::vector<std::pair<int64_t, uint64_t>> order;
  index.for_each_chunk([&](const Digest&, const catalog::ChunkLocation& loc) { order.emplace_back(loc.pack, loc.offset); });
  CHECK(order == std::vector<std::pair<int64_t, uint64_t>>{{p1, 8}, {p1, 208}, {p2, 208}});

  auto in_p1 = index.chunks_in_pack(p1);
  REQUIRE(in_p1.size() == 2);
  CHECK(in_p1[0].first == id_of("a"));  // by offset
  CHECK(in_p1[1].first == id_of("b"));
  CHECK(in_p1[1].second.stored == 40);

  // Moves only from where the caller saw it.
  CHECK_FALSE(index.move_chunk(id_of("a"), at(p1, 9), p2, 500));
  CHECK_FALSE(index.move_chunk(id_of("a"), at(p1, 7), p2, 500));
  CHECK_FALSE(index.move_chunk(id_of("a"), at(p2, 8), p2, 500));
  CHECK(index.find_chunk(id_of("a"))->offset == 8);
  CHECK(index.move_chunk(id_of("a"), *a, p2, 500));
  CHECK(index.find_chunk(id_of("a"))->pack == p2);
  CHECK(index.find_chunk(id_of("a"))->offset == 500);
  CHECK(index.find_chunk(id_of("a"))->stored == 200);
  CHECK_FALSE(index.move_chunk(id_of("a"), *a, p2, 600));  // moved already

  std::vector<Digest> gone{id_of("b"), id_of("never")};
  index.delete_chunks(gone);
  CHECK_FALSE(index.find_chunk(id_of("b")));
  CHECK(index.chunk_count() == 2);
  CHECK(index.pack_chunk_count(p1) == 0);

  SUBCASE("add_chunks is refused for a retired pack, and indexes nothing") {
    REQUIRE(cat->retire_pack(p1, 256, 1));
    std::vector<std::pair<Digest, catalog::ChunkLocation>> late{{id_of("d"), at(p1, 300, 10)}};
    CHECK_FALSE(index.add_chunks(late, p1, 400));
    CHECK_FALSE(index.find_chunk(id_of("d")));
    CHECK(cat->pack(p1)->size == 256);
    CHECK(index.chunk_count() == 2);
  }
  SUBCASE("add_chunks is refused for a pack that does not exist") {
    std::vector<std::pair<Digest, catalog::ChunkLocation>> stray{{id_of("e"), at(9999, 8, 10)}};
    CHECK_FALSE(index.add_chunks(stray, 9999, 18));
    CHECK_FALSE(index.find_chunk(id_of("e")));
  }
  SUBCASE("index changes join the catalog's transactions") {
    {
      Transaction tx(*cat);
      index.delete_chunks(std::vector<Digest>{id_of("c")});
      CHECK_FALSE(index.find_chunk(id_of("c")));
    }  // rolled back
    CHECK(index.find_chunk(id_of("c")));
  }
}

TEST_CASE_TEMPLATE_DEFINE("catalog conformance: tokens", B, tokens) {
  util::ManualClock clock(k_t0);
  B backend;
  auto cat = backend.open();
  CHECK_FALSE(cat->token_role("h1"));
  CHECK(cat->tokens().empty());
  CHECK(cat->token_count("admin") == 0);
  cat->add_token("h1", "root", "admin");
  clock.advance(1);
  cat->add_token("h2", "desk", "helpdesk", k_t0 + 60 * k_s);
  clock.advance(1);
  cat->add_token("h3", "root2", "admin", k_t0 + 10 * k_s);

  CHECK(cat->token_role("h1") == std::make_pair(std::string("admin"), std::string("root")));
  CHECK(cat->token_role("h2") == std::make_pair(std::string("helpdesk"), std::string("desk")));
  CHECK(cat->live_token_role("desk") == "helpdesk");
  CHECK_FALSE(cat->live_token_role("nobody"));
  CHECK(cat->token_name_taken("desk"));
  CHECK_FALSE(cat->token_name_taken("nobody"));
  CHECK(cat->live_admin_tokens() == 2);

  // Expiry: at its moment a token is dead, though its name stays taken until revoked.
  clock.set(k_t0 + 10 * k_s);
  CHECK_FALSE(cat->token_role("h3"));
  CHECK_FALSE(cat->live_token_role("root2"));
  CHECK(cat->token_name_taken("root2"));
  CHECK(cat->live_admin_tokens() == 1);
  CHECK(cat->token_count("admin") == 2);

  auto list = cat->tokens();
  REQUIRE(list.size() == 3);
  CHECK(list[0]["name"] == "root");  // by creation
  CHECK(list[1]["name"] == "desk");
  CHECK(list[0]["role"] == "admin");
  CHECK(list[0]["created"] == util::rfc3339(k_t0));
  CHECK(list[0]["revoked"] == false);
  CHECK(list[0]["expires"].is_null());
  CHECK(list[0]["expired"] == false);
  CHECK(list[1]["expires"] == util::rfc3339(k_t0 + 60 * k_s));
  CHECK(list[1]["expired"] == false);
  CHECK(list[2]["expired"] == true);
  for (const auto& t : list) CHECK_FALSE(t.contains("hash"));

  // Revoking: every live token of the name, counted once.
  cat->add_token("h4", "desk", "helpdesk");
  CHECK(cat->revoke_token("desk") == 2);
  CHECK(cat->revoke_token("desk") == 0);
  CHECK_FALSE(cat->token_role("h2"));
  CHECK_FALSE(cat->token_role("h4"));
  CHECK_FALSE(cat->token_name_taken("desk"));
  CHECK(cat->tokens()[1]["revoked"] == true);
  CHECK(cat->revoke_token("root") == 1);
  CHECK(cat->live_admin_tokens() == 0);
  CHECK(cat->token_count("admin") == 2);  // revoked and expired ones too
  CHECK(cat->token_count("helpdesk") == 2);
  CHECK_THROWS_AS(cat->add_token("h1", "again", "admin"), Error);  // a hash is stored once
}

TEST_CASE_TEMPLATE_DEFINE("catalog conformance: policies and collections", B, policies) {
  B backend;
  auto cat = backend.open();
  CHECK_FALSE(cat->policy("default"));
  CHECK(cat->policies().empty());
  cat->set_policy("kiosks", {{"retention", {{"last", 3}}}});
  cat->set_policy("default", {{"retention", {{"last", 5}}}});
  cat->set_policy("kiosks", {{"retention", {{"last", 4}}}});
  CHECK(cat->policy("kiosks") == nlohmann::json{{"retention", {{"last", 4}}}});
  CHECK(cat->policies() == std::vector<std::string>{"default", "kiosks"});

  CHECK_FALSE(cat->collection("berlin"));
  CHECK(cat->collections().empty());
  cat->set_collection("berlin", "dynamic", {{"match", {{"hostname", "ber-*"}}}});
  cat->set_collection("all", "static", {{"devices", {"a", "b"}}});
  cat->set_collection("berlin", "static", {{"devices", {"c"}}});
  auto c = cat->collection("berlin");
  REQUIRE(c);
  CHECK(c->first == "static");
  CHECK(c->second == nlohmann::json{{"devices", {"c"}}});
  CHECK(cat->collections() == std::vector<std::string>{"all", "berlin"});
  CHECK(cat->delete_collection("berlin"));
  CHECK_FALSE(cat->delete_collection("berlin"));
  CHECK(cat->collections() == std::vector<std::string>{"all"});
}

TEST_CASE_TEMPLATE_DEFINE("catalog conformance: events", B, events) {
  util::ManualClock clock(k_t0);
  B backend;
  auto cat = backend.open();
  CHECK(cat->events("", 0, 0).empty());
  cat->add_event("device.registered", "a", {{"hostname", "a.example"}});
  clock.advance(k_s);
  cat->add_event("order.created", "a", {{"order", 1}});
  cat->add_event("orders.odd", "b", nlohmann::json::object());
  clock.advance(k_s);
  cat->add_event("order.done", "b", nlohmann::json::object());
  cat->add_event("order", "", nlohmann::json::object());

  auto all = cat->events("", 0, 0);
  REQUIRE(all.size() == 5);
  CHECK(all[0]["type"] == "device.registered");
  CHECK(all[0]["device_id"] == "a");
  CHECK(all[0]["detail"] == nlohmann::json{{"hostname", "a.example"}});
  CHECK(all[0]["time"] == util::rfc3339(k_t0));
  CHECK(all[1]["event_id"].template get<int64_t>() > all[0]["event_id"].template get<int64_t>());  // id order

  CHECK(cat->events("a", 0, 0).size() == 2);
  CHECK(event_types(cat->events("", k_t0 + k_s, 0)) ==
        std::vector<std::string>{"order.created", "orders.odd", "order.done", "order"});
  int64_t second = all[1]["event_id"];
  CHECK(event_types(cat->events("", 0, second)) == std::vector<std::string>{"orders.odd", "order.done", "order"});
  // A type is itself and its family ("order" is order.created, order.done, never orders.odd).
  CHECK(event_types(cat->events("", 0, 0, "order")) == std::vector<std::string>{"order.created", "order.done", "order"});
  CHECK(event_types(cat->events("", 0, 0, "order.")) == std::vector<std::string>{"order.created", "order.done", "order"});
  CHECK(event_types(cat->events("", 0, 0, "order.done")) == std::vector<std::string>{"order.done"});
  CHECK(event_types(cat->events("b", k_t0 + 2 * k_s, 0, "order")) == std::vector<std::string>{"order.done"});
  CHECK(cat->events("", 0, 0, "device.registered.x").empty());
}

TEST_CASE_TEMPLATE_DEFINE("catalog conformance: layers, orders, given", B, layers) {
  util::ManualClock clock(k_t0);
  B backend;
  auto cat = backend.open();
  CHECK(cat->layers("").empty());
  CHECK_FALSE(cat->layer("nginx", 0));
  {
    Transaction tx(*cat);
    CHECK(cat->add_layer("nginx", "app", id_of("n1"), {{"files", 1}}) == 1);
    CHECK(cat->add_layer("nginx", "app", id_of("n2"), {{"files", 2}}) == 2);
    CHECK(cat->add_layer("bookworm", "base", id_of("b1"), nlohmann::json::object()) == 1);
    tx.commit();
  }
  auto all = cat->layers("");
  REQUIRE(all.size() == 3);
  CHECK(all[0].name == "bookworm");  // by name, then version
  CHECK(all[1].version == 1);
  CHECK(all[2].version == 2);
  CHECK(cat->layers("nginx").size() == 2);
  auto latest = cat->layer("nginx", 0);
  REQUIRE(latest);
  CHECK(latest->version == 2);
  CHECK(latest->kind == "app");
  CHECK(latest->tree == id_of("n2"));
  CHECK(latest->manifest == nlohmann::json{{"files", 2}});
  CHECK(latest->created_at == k_t0);
  CHECK(cat->layer("nginx", 1)->tree == id_of("n1"));
  CHECK_FALSE(cat->layer("nginx", 3));
  {
    // A deleted version is gone; its number (even the newest's) is never given again.
    Transaction tx(*cat);
    cat->delete_layer("nginx", 2);
    CHECK_FALSE(cat->layer("nginx", 2));
    CHECK(cat->layer("nginx", 0)->version == 1);
    CHECK(cat->add_layer("nginx", "app", id_of("n3"), nlohmann::json::object()) == 3);
    cat->delete_layer("nginx", 1);
    CHECK(cat->add_layer("nginx", "app", id_of("n4"), nlohmann::json::object()) == 4);
    CHECK(cat->add_layer("other", "app", id_of("o1"), nlohmann::json::object()) == 1);
  }

  CHECK(cat->orders("a", "").empty());
  CHECK_FALSE(cat->order("o1"));
  cat->add_order({"o2", "a", {{"kind", "apply"}}, "pending", k_t0 + 2, 0, nlohmann::json::object()});
  cat->add_order({"o1", "a", {{"kind", "enforce"}}, "pending", k_t0 + 1, 0, nlohmann::json::object()});
  cat->add_order({"o3", "b", {{"kind", "apply"}}, "pending", k_t0 + 3, 0, nlohmann::json::object()});
  auto of_a = cat->orders("a", "");
  REQUIRE(of_a.size() == 2);
  CHECK(of_a[0].id == "o1");  // oldest first
  CHECK(of_a[0].spec == nlohmann::json{{"kind", "enforce"}});
  clock.advance(k_s);
  cat->finish_order("o1", "done", {{"snapshot", "s9"}});
  auto o1 = cat->order("o1");
  REQUIRE(o1);
  CHECK(o1->state == "done");
  CHECK(o1->finished_at == k_t0 + k_s);
  CHECK(o1->result == nlohmann::json{{"snapshot", "s9"}});
  CHECK(cat->orders("a", "pending").size() == 1);
  CHECK(cat->orders("a", "done").at(0).id == "o1");

  CHECK(cat->given("a") == nlohmann::json::object());
  cat->set_given("a", {{"layers", {"nginx@1"}}});
  cat->set_given("a", {{"layers", {"nginx@2"}}, {"id_map", nlohmann::json::object()}});
  CHECK(cat->given("a") == nlohmann::json{{"layers", {"nginx@2"}}, {"id_map", nlohmann::json::object()}});
  CHECK(cat->given("b") == nlohmann::json::object());
}

TEST_CASE_TEMPLATE_DEFINE("catalog conformance: credentials, CVDs, captures, uploads", B, device_state) {
  util::ManualClock clock(k_t0);
  B backend;
  auto cat = backend.open();
  CHECK_FALSE(cat->device_credential("a"));
  cat->set_device_credential("a", "h1");
  cat->set_device_credential("a", "h2");
  CHECK(cat->device_credential("a") == "h2");

  CHECK(cat->cvds("a").empty());
  CHECK(cat->start_cvd("a", "provision") == 2);  // the first CVD, from registration, is 1
  clock.advance(k_s);
  CHECK(cat->start_cvd("a", "provision") == 3);
  CHECK(cat->start_cvd("b", "provision") == 2);
  CHECK(cat->cvds("a") == std::vector<std::pair<int64_t, int64_t>>{{2, k_t0}, {3, k_t0 + k_s}});

  // The latest migration preflight report, one per device, replaced by the next.
  CHECK_FALSE(cat->migration_check("a"));
  int64_t before = util::now_ns();
  cat->set_migration_check("a", {{"inhibited", true}});
  cat->set_migration_check("a", {{"inhibited", false}, {"findings", nlohmann::json::array()}});
  REQUIRE(cat->migration_check("a"));
  CHECK(cat->migration_check("a")->first == nlohmann::json{{"inhibited", false}, {"findings", nlohmann::json::array()}});
  CHECK(cat->migration_check("a")->second >= before);
  CHECK_FALSE(cat->migration_check("b"));
  CHECK_FALSE(cat->capture("a"));
  cat->set_capture("a", "s1");
  cat->set_capture("a", "s2");
  CHECK(cat->capture("a") == "s2");

  CHECK(cat->uploads_in_flight(0).count == 0);
  clock.set(k_t0);
  cat->touch_upload("a");
  clock.advance(10 * k_s);
  cat->touch_upload("capture:desk");
  cat->touch_upload("a");  // keeps its start, moves its touch
  auto u = cat->uploads_in_flight(k_t0 + k_s);
  CHECK(u.count == 2);
  CHECK(u.oldest_start == k_t0);
  clock.advance(k_s / 2);
  cat->touch_upload("a");  // within a second of its last touch: not written
  CHECK(cat->uploads_in_flight(k_t0 + 10 * k_s + 1).count == 0);
  clock.advance(k_s / 2);
  cat->touch_upload("a");  // a second after it: moved
  CHECK(cat->uploads_in_flight(k_t0 + 11 * k_s).count == 1);
  clock.advance(10 * k_s);
  cat->touch_upload("capture:desk");
  u = cat->uploads_in_flight(k_t0 + 15 * k_s);  // "a" silent since k_t0 + 10s
  CHECK(u.count == 1);
  CHECK(u.oldest_start == k_t0 + 10 * k_s);
  cat->end_upload("capture:desk");
  cat->end_upload("never");
  CHECK(cat->uploads_in_flight(0).count == 1);
  cat->end_upload("a");
  CHECK(cat->uploads_in_flight(0).count == 0);
}

TEST_CASE_TEMPLATE_DEFINE("catalog conformance: counts", B, counts) {
  util::ManualClock clock(k_t0);
  B backend;
  auto cat = backend.open();
  auto zero = cat->counts(0);
  CHECK(zero.devices == std::array<int64_t, 4>{0, 0, 0, 0});
  CHECK(zero.snapshots == 0);
  CHECK(zero.chunks == 0);
  CHECK(zero.pack_bytes == 0);
  CHECK(zero.uploads_in_flight == 0);
  CHECK(zero.orders_pending == 0);

  cat->add_device(device("a"));
  cat->add_device(device("b"));
  cat->add_device(device("c"));
  cat->set_device_state("b", DeviceState::accepted, false);
  cat->set_device_state("c", DeviceState::rejected, false);
  cat->add_device(device("d"));
  cat->add_device(device("e", DeviceState::accepted));
  cat->set_device_replaced("e", "b");
  cat->add_snapshot(snapshot("s1", "a", k_t0, "t"));
  int64_t v = cat->add_volume("mem://v");
  int64_t p1 = cat->add_pack("p1", v), p2 = cat->add_pack("p2", v);
  REQUIRE(cat->add_chunks(std::vector<std::pair<Digest, catalog::ChunkLocation>>{{id_of("x"), at(p1, 8)}}, p1, 116));
  cat->set_pack_size(p2, 1000, k_t0);
  cat->add_order({"o1", "a", nlohmann::json::object(), "pending", k_t0, 0, nlohmann::json::object()});
  cat->add_order({"o2", "a", nlohmann::json::object(), "pending", k_t0, 0, nlohmann::json::object()});
  cat->finish_order("o2", "failed", nlohmann::json::object());
  cat->touch_upload("a");
  clock.advance(100 * k_s);
  cat->touch_upload("b");

  auto c = cat->counts(k_t0 + 50 * k_s);
  CHECK(c.devices == std::array<int64_t, 4>{2, 1, 1, 1});
  CHECK(c.snapshots == 1);
  CHECK(c.chunks == 1);
  CHECK(c.pack_bytes == 1116);
  CHECK(c.uploads_in_flight == 1);
  CHECK(c.orders_pending == 1);
  CHECK(cat->counts(0).uploads_in_flight == 2);
}

TEST_CASE_TEMPLATE_DEFINE("catalog conformance: the GC lock and mark set", B, gc) {
  B backend;
  auto cat = backend.open();
  auto other = backend.open();  // another process on the same store
  {
    auto lock = cat->gc_lock();
    CHECK_ERROR_KIND(other->gc_lock(), ErrorKind::precondition);
    CHECK_ERROR_KIND(cat->gc_lock(), ErrorKind::precondition);
  }
  CHECK(other->gc_lock() != nullptr);  // released with its holder

  cat->add_device(device("a"));
  cat->add_snapshot(snapshot("s1", "a", k_t0, "root1"));
  cat->add_snapshot(snapshot("s2", "a", k_t0 + 1, "root1"));  // the same tree twice
  cat->add_snapshot(snapshot("s3", "a", k_t0 + 2, "root2"));
  cat->add_layer("nginx", "app", id_of("layer1"), nlohmann::json::object());

  auto marks = cat->begin_marks();
  auto roots = marks->new_roots();
  std::sort(roots.begin(), roots.end());
  std::vector<Digest> want{id_of("root1"), id_of("root2"), id_of("layer1")};
  std::sort(want.begin(), want.end());
  CHECK(roots == want);  // each once
  CHECK(marks->add_tree(id_of("root1")));
  CHECK_FALSE(marks->add_tree(id_of("root1")));  // walked already
  CHECK(marks->add_tree(id_of("layer1")));
  CHECK(marks->new_roots() == std::vector<Digest>{id_of("root2")});
  CHECK_FALSE(marks->contains(id_of("root1")));  // walked is not live: add_live says that
  marks->add_live(id_of("root1"));
  marks->add_live(id_of("root1"));
  CHECK(marks->contains(id_of("root1")));

  // The sweep's pages: every indexed chunk once, in id order, with its live flag.
  util::ManualClock clock(k_t0);
  int64_t v = cat->add_volume("mem://v");
  int64_t p = cat->add_pack("p", v);
  std::vector<std::pair<Digest, catalog::ChunkLocation>> chunks;
  for (int i = 0; i < 7; ++i) chunks.push_back({id_of("chunk" + std::to_string(i)), at(p, 8 + 100 * i, 90 + i)});
  REQUIRE(cat->add_chunks(chunks, p, 800));
  for (int i : {1, 4}) marks->add_live(chunks[i].first);
  std::vector<catalog::SweepEntry> seen;
  std::optional<Digest> after;
  for (int pages = 0;; ++pages) {
    REQUIRE(pages < 10);
    auto page = marks->sweep_candidates(after, 3);
    CHECK(page.size() <= 3);
    seen.insert(seen.end(), page.begin(), page.end());
    if (page.size() < 3) break;
    after = page.back().id;
  }
  REQUIRE(seen.size() == 7);
  CHECK(std::is_sorted(seen.begin(), seen.end(), [](const auto& x, const auto& y) { return x.id < y.id; }));
  for (const auto& e : seen) {
    auto i = std::find_if(chunks.begin(), chunks.end(), [&](const auto& c) { return c.first == e.id; }) - chunks.begin();
    REQUIRE(i < 7);
    CHECK(e.live == (i == 1 || i == 4));
    CHECK(e.stored == uint32_t(90 + i));
    CHECK(e.added_at == k_t0);
  }

  // A new mark set starts empty.
  marks.reset();
  marks = cat->begin_marks();
  CHECK_FALSE(marks->contains(id_of("root1")));
  CHECK(marks->new_roots().size() == 3);
  // Skipped snapshots (a dry run's expired ones) are no roots; a tree another snapshot
  // still has stays one.
  marks.reset();
  marks = cat->begin_marks();
  std::vector<std::string> skip{"s1", "s3"};
  marks->skip_snapshots(skip);
  roots = marks->new_roots();
  std::sort(roots.begin(), roots.end());
  want = {id_of("root1"), id_of("layer1")};
  std::sort(want.begin(), want.end());
  CHECK(roots == want);
  marks.reset();
  marks = cat->begin_marks();  // and the skip list goes with its mark set
  CHECK(marks->new_roots().size() == 3);
  for (const auto& e : marks->sweep_candidates(std::nullopt, 100)) CHECK_FALSE(e.live);
}

TEST_CASE_TEMPLATE_DEFINE("catalog conformance: transactions", B, transactions) {
  B backend;
  auto cat = backend.open();
  auto other = backend.open();

  SUBCASE("a write transaction not committed is rolled back on destruction") {
    {
      Transaction tx(*cat);
      cat->add_device(device("a"));
      cat->set_policy("p", nlohmann::json::object());
      CHECK(cat->device("a"));  // its own writes are visible to it
    }
    CHECK_FALSE(cat->device("a"));
    CHECK_FALSE(cat->policy("p"));
    CHECK_FALSE(other->device("a"));
  }
  SUBCASE("commit makes the writes visible to every connection") {
    Transaction tx(*cat);
    cat->add_device(device("a"));
    cat->add_event("device.registered", "a", nlohmann::json::object());
    CHECK_FALSE(other->device("a"));  // not before the commit
    tx.commit();
    CHECK(other->device("a"));
    CHECK(other->events("", 0, 0).size() == 1);
  }
  SUBCASE("a read batch sees one state") {
    cat->add_device(device("a"));
    {
      Transaction reads(*cat, Transaction::Mode::read);
      CHECK(cat->devices(std::nullopt).size() == 1);
      other->add_device(device("b"));
      CHECK(cat->devices(std::nullopt).size() == 1);
      CHECK_FALSE(cat->device("b"));
      reads.commit();
    }
    CHECK(cat->devices(std::nullopt).size() == 2);
  }
  SUBCASE("transactions follow one another on one connection") {
    for (int i = 0; i < 3; ++i) {
      Transaction tx(*cat);
      cat->add_device(device("d" + std::to_string(i)));
      if (i != 1) tx.commit();
    }
    CHECK(other->devices(std::nullopt).size() == 2);
    CHECK_FALSE(other->device("d1"));
  }
}

TEST_CASE_TEMPLATE_APPLY(devices, Backends);
TEST_CASE_TEMPLATE_APPLY(snapshots, Backends);
TEST_CASE_TEMPLATE_APPLY(packs, Backends);
TEST_CASE_TEMPLATE_APPLY(chunk_index, Backends);
TEST_CASE_TEMPLATE_APPLY(tokens, Backends);
TEST_CASE_TEMPLATE_APPLY(policies, Backends);
TEST_CASE_TEMPLATE_APPLY(events, Backends);
TEST_CASE_TEMPLATE_APPLY(layers, Backends);
TEST_CASE_TEMPLATE_APPLY(device_state, Backends);
TEST_CASE_TEMPLATE_APPLY(counts, Backends);
TEST_CASE_TEMPLATE_APPLY(gc, Backends);
TEST_CASE_TEMPLATE_APPLY(transactions, Backends);

TEST_SUITE_END();
