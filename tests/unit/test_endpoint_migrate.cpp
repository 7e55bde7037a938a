#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "libmirage/endpoint/migrate.hpp"
#include "libmirage/util/error.hpp"
#include "libmirage/util/fd.hpp"
#include "tests/unit/temp_dir.hpp"

using namespace mirage;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

/// A simulated kill: thrown by a crash hook (not a std::exception, so nothing catches
/// it), it stops the removal where a kill -9 would.
struct Killed {};

/// ROOT/old-root/ID with two files and a link: a.bin (1000 bytes, also linked from
/// ROOT/usr/a.bin: not freed), b.bin (500 bytes), and its retention record in STATE,
/// made 11 days ago with 10 days to keep.
void make_old_root(const fs::path& root, const fs::path& state, const std::string& id) {
  fs::path top = root / "old-root" / id;
  fs::create_directories(top / "usr/lib");
  fs::create_directories(root / "usr");
  std::ofstream(top / "usr/a.bin") << std::string(1000, 'a');
  std::ofstream(top / "usr/lib/b.bin") << std::string(500, 'b');
  fs::create_symlink("b.bin", top / "usr/lib/c");
  fs::create_hard_link(top / "usr/a.bin", root / "usr/a.bin");
  fs::create_directories(state);
  auto made = std::chrono::system_clock::now() - std::chrono::hours(24 * 11);
  int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(made.time_since_epoch()).count();
  std::ofstream(state / "old-roots.json") << json{{id, {{"created_at", ns}, {"keep_days", 10}, {"bytes", 1500}}}}.dump();
}

/// A root with /old-root/abc123 (make_old_root), the time, and the reports made.
struct OldRoot {
  test::TempDir dir;
  fs::path root = dir.path() / "root", state = dir.path() / "state";
  std::chrono::system_clock::time_point now = std::chrono::system_clock::now();
  std::vector<json> reports;
  endpoint::OldRootReport record = [this](const json& j) { reports.push_back(j); };
  OldRoot() { make_old_root(root, state, "abc123"); }
};

json retention(const fs::path& state) { return json::parse(util::read_file(state / "old-roots.json")); }

}  // namespace

TEST_SUITE_BEGIN("endpoint::expire_old_roots");

TEST_CASE("killed in the middle, then after its report: the reruns finish it and report the first figures once") {
  OldRoot f;
  auto& [dir, root, state, now, reports, record] = f;
  fs::path top = root / "old-root" / "abc123";

  // Killed before its second entry goes: half removed, marked with what it held.
  auto kill_at_1 = [](std::string_view point, size_t i) {
    if (point == "old_root_remove" && i == 1) throw Killed();
  };
  CHECK_THROWS_AS(endpoint::expire_old_roots(root, state, now, record, kill_at_1), Killed);
  CHECK(reports.empty());
  CHECK(fs::exists(top));
  json marked = retention(state)["abc123"]["removing"];
  CHECK(marked == json{{"files", 3}, {"bytes", 1500}, {"bytes_freed", 500}, {"reason", "retention"}});

  // Killed after its report, before it is forgotten: reported with the first figures.
  auto kill_reported = [](std::string_view point, size_t) {
    if (point == "old_root_reported") throw Killed();
  };
  CHECK_THROWS_AS(endpoint::expire_old_roots(root, state, now, record, kill_reported), Killed);
  CHECK_FALSE(fs::exists(top));
  CHECK(fs::exists(root / "usr/a.bin"));  // the other link stays
  REQUIRE(reports.size() == 1);
  CHECK(reports[0] == json{{"migration_id", "abc123"}, {"files", 3}, {"bytes", 1500}, {"bytes_freed", 500},
                           {"reason", "retention"}});
  CHECK(retention(state).contains("abc123"));

  // The next run reports it again (the server keeps one event) and forgets it.
  json removed = endpoint::expire_old_roots(root, state, now, record);
  REQUIRE(reports.size() == 2);
  CHECK(reports[1] == reports[0]);
  CHECK(removed == json::array({reports[0]}));
  CHECK(retention(state) == json::object());
  CHECK(endpoint::expire_old_roots(root, state, now, record) == json::array());
  CHECK(reports.size() == 2);
}

TEST_CASE("a report that fails keeps the removal to be reported; retention not passed and a queued rollback keep it") {
  OldRoot f;
  auto& [dir, root, state, now, reports, record] = f;

  // Its retention not passed yet (10 days ago), or kept for a queued rollback.
  CHECK(endpoint::expire_old_roots(root, state, now - std::chrono::hours(24 * 2), record) == json::array());
  CHECK(endpoint::expire_old_roots(root, state, now, record, nullptr, "abc123") == json::array());
  CHECK(fs::exists(root / "old-root/abc123/usr/a.bin"));
  CHECK(reports.empty());

  // The server cannot be reached: removed, not forgotten; the next sync reports it.
  auto unreachable = [](const json&) -> void { throw Error(ErrorKind::unavailable, "server down"); };
  CHECK(endpoint::expire_old_roots(root, state, now, unreachable) == json::array());
  CHECK_FALSE(fs::exists(root / "old-root/abc123"));
  CHECK(retention(state)["abc123"]["removing"]["bytes"] == 1500);
  CHECK(endpoint::expire_old_roots(root, state, now, record).size() == 1);
  REQUIRE(reports.size() == 1);
  CHECK(reports[0]["bytes"] == 1500);
}

TEST_CASE("a rollback: measured before its revert (which removes the tree), reported with those figures") {
  OldRoot f;
  auto& [dir, root, state, now, reports, record] = f;
  endpoint::old_root_before_rollback(root, state, "../etc");  // not a migration id: nothing
  endpoint::old_root_rolled_back(root, state, "../etc");
  CHECK(retention(state)["abc123"].size() == 3);
  endpoint::old_root_before_rollback(root, state, "abc123");
  CHECK(retention(state)["abc123"]["measured"]["bytes"] == 1500);
  fs::remove_all(root / "old-root/abc123/usr/lib");  // the revert's commit, cut short
  endpoint::old_root_before_rollback(root, state, "abc123");  // its rerun: the first figures kept
  CHECK(retention(state)["abc123"]["measured"]["bytes"] == 1500);
  fs::remove_all(root / "old-root/abc123");
  endpoint::old_root_rolled_back(root, state, "abc123");
  CHECK(retention(state)["abc123"]["removing"] ==
        json{{"files", 3}, {"bytes", 1500}, {"bytes_freed", 500}, {"reason", "rollback"}});
  CHECK_FALSE(retention(state)["abc123"].contains("measured"));
  // Its retention not passed, and queued for a rollback: marked, so it goes all the same.
  CHECK(endpoint::expire_old_roots(root, state, now - std::chrono::hours(24 * 5), record, nullptr, "abc123").size() == 1);
  REQUIRE(reports.size() == 1);
  CHECK(reports[0]["reason"] == "rollback");
  CHECK(reports[0]["bytes"] == 1500);
  endpoint::old_root_rolled_back(root, state, "abc123");  // again (a rerun of the order): nothing
  CHECK(retention(state) == json::object());
}

TEST_SUITE_END();
