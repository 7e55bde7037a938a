// What --device and --snapshot name, resolved the one way every command resolves them:
// the time forms on a manual clock (each accepted form, and the refusals), the choice
// from a snapshot list, and hostnames against a loopback server.
#include <doctest/doctest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "libmirage/client/client.hpp"
#include "libmirage/endpoint/centralize.hpp"
#include "libmirage/server/loopback.hpp"
#include "libmirage/server/service.hpp"
#include "libmirage/util/clock.hpp"
#include "tests/unit/check_error.hpp"
#include "tests/unit/loopback_world.hpp"

using namespace mirage;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr int64_t k_s = 1000000000;

int64_t at(const char* rfc3339) { return *util::parse_time_lower(rfc3339); }

/// The message of the mirage::Error `f` throws ("" when none).
template <class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

json snapshot(const std::string& id, const char* time) {
  return {{"snapshot_id", id}, {"time", time}, {"time_ns", at(time)}, {"device_id", "pc-1"}};
}

// Oldest first, as snapshot.list gives them. The fourth id starts with "3d", which is
// also a time (three days ago): the time must win.
const json k_list = json::array({snapshot("ab11aa00", "2026-11-20T08:00:00Z"), snapshot("0c2200ff", "2026-11-25T09:00:00Z"),
                                 snapshot("ab22bb00", "2026-11-30T14:00:00Z"), snapshot("3d33cc00", "2026-12-01T23:00:00Z"),
                                 snapshot("c044dd00", "2026-12-02T09:00:00Z")});

std::string picked(const std::string& spec) { return client::pick_snapshot(k_list, "pc-1", spec)["snapshot_id"]; }

using World = test::LoopbackWorld;

}  // namespace

TEST_SUITE_BEGIN("util::parse_time_before");

TEST_CASE("durations: a count and one unit, s m h d w") {
  CHECK(util::parse_duration("90s") == 90 * k_s);
  CHECK(util::parse_duration("30m") == 30 * 60 * k_s);  // minutes, as systemd and Go read m
  CHECK(util::parse_duration("2h") == 2 * 3600 * k_s);
  CHECK(util::parse_duration("3d") == 3 * 86400 * k_s);
  CHECK(util::parse_duration("1w") == 7 * 86400 * k_s);
  for (const char* bad : {"", "h", "2", "2x", "-2h", "2h30m", "0d", "1.5h", "2 h", "2H", "999999999999w"}) {
    CAPTURE(bad);
    CHECK_FALSE(util::parse_duration(bad));
  }
}

TEST_CASE("each form on an injected clock: now, yesterday, an age, a date, a time") {
  util::ManualClock clock(at("2026-12-02T10:30:00Z"));
  int64_t now = util::now_ns();
  CHECK(now == at("2026-12-02T10:30:00Z"));
  CHECK(util::parse_time_before("now", now) == now);
  CHECK(util::parse_time_before("today", now) == now);
  CHECK(util::parse_time_before("yesterday", now) == at("2026-12-02T00:00:00Z") - 1);  // all of 1 December
  CHECK(util::parse_time_before("2h", now) == at("2026-12-02T08:30:00Z"));
  CHECK(util::parse_time_before("3d", now) == at("2026-11-29T10:30:00Z"));
  CHECK(util::parse_time_before("1w", now) == at("2026-11-25T10:30:00Z"));
  CHECK(util::parse_time_before("2026-11-30", now) == at("2026-12-01T00:00:00Z") - 1);  // the whole day
  CHECK(util::parse_time_before("2026-11-30 14:00", now) == at("2026-11-30T14:01:00Z") - 1);  // the whole minute
  CHECK(util::parse_time_before("2026-11-30T14:00:05Z", now) == at("2026-11-30T14:00:06Z") - 1);
  // The clock moves: so does what an age names.
  clock.advance(3600 * k_s);
  CHECK(util::parse_time_before("2h", util::now_ns()) == at("2026-12-02T09:30:00Z"));
  for (const char* bad : {"", "latest", "tomorrow", "3 days", "2026-13-01", "2026-11-30 25:00", "ab12"}) {
    CAPTURE(bad);
    CHECK_FALSE(util::parse_time_before(bad, now));
  }
}

TEST_CASE("parse_time_after: the same forms as a lower bound, each from its first ns") {
  int64_t now = at("2026-12-02T10:30:00Z");
  CHECK(util::parse_time_after("now", now) == now);
  CHECK(util::parse_time_after("today", now) == at("2026-12-02T00:00:00Z"));
  CHECK(util::parse_time_after("yesterday", now) == at("2026-12-01T00:00:00Z"));  // all of 1 December
  CHECK(util::parse_time_after("2h", now) == at("2026-12-02T08:30:00Z"));
  CHECK(util::parse_time_after("3d", now) == at("2026-11-29T10:30:00Z"));
  CHECK(util::parse_time_after("2026-11-30", now) == at("2026-11-30T00:00:00Z"));
  CHECK(util::parse_time_after("2026-11-30 14:00", now) == at("2026-11-30T14:00:00Z"));
  for (const char* bad : {"", "latest", "tomorrow", "3 days", "2026-13-01", "ab12"}) {
    CAPTURE(bad);
    CHECK_FALSE(util::parse_time_after(bad, now));
  }
}

TEST_SUITE_END();

TEST_SUITE_BEGIN("client::resolve_snapshot");

TEST_CASE("the newest snapshot at or before each time form, on an injected clock") {
  util::ManualClock clock(at("2026-12-02T10:30:00Z"));
  CHECK(picked("latest") == "c044dd00");
  CHECK(picked("") == "c044dd00");
  CHECK(picked("now") == "c044dd00");
  CHECK(picked("1h") == "c044dd00");            // 09:30 today
  CHECK(picked("2h") == "3d33cc00");            // 08:30 today: last night's
  CHECK(picked("yesterday") == "3d33cc00");     // the end of 1 December
  CHECK(picked("3d") == "0c2200ff");            // 29 November, not the id starting 3d
  CHECK(picked("1w") == "0c2200ff");            // 25 November 10:30
  CHECK(picked("2026-11-30") == "ab22bb00");    // that day's last
  CHECK(picked("2026-11-30 14:00") == "ab22bb00");  // taken at 14:00:00: at or before
  CHECK(picked("2026-11-30 13:59") == "0c2200ff");
  CHECK(picked("2026-11-30T14:00:00Z") == "ab22bb00");
  clock.set(at("2026-12-09T10:30:00Z"));  // a week on, the same words name other snapshots
  CHECK(picked("yesterday") == "c044dd00");
  CHECK(picked("1w") == "c044dd00");  // 2 December 10:30
  CHECK(picked("8d") == "ab22bb00");  // 1 December 10:30
}

TEST_CASE("ids and prefixes; an ambiguous prefix lists the candidates") {
  util::ManualClock clock(at("2026-12-02T10:30:00Z"));
  CHECK(picked("c044dd00") == "c044dd00");
  CHECK(picked("ab2") == "ab22bb00");
  CHECK(picked("3d3") == "3d33cc00");  // more of the id than the time form
  CHECK_ERROR_KIND(picked("ab"), ErrorKind::usage);
  std::string message = message_of([] { picked("ab"); });
  CHECK(message.find("ambiguous") != std::string::npos);
  CHECK(message.find("ab11aa00 (2026-11-20T08:00:00Z)") != std::string::npos);
  CHECK(message.find("ab22bb00 (2026-11-30T14:00:00Z)") != std::string::npos);
  CHECK(message.find("c044dd00") == std::string::npos);
}

TEST_CASE("refusals: before the first snapshot, no match, no snapshots") {
  util::ManualClock clock(at("2026-12-02T10:30:00Z"));
  for (const char* early : {"2026-11-20 07:59", "2026-11-19", "4w"}) {
    CAPTURE(early);
    CHECK_ERROR_KIND(picked(early), ErrorKind::not_found);
    CHECK(message_of([&] { picked(early); }).find("the first is ab11aa00 (2026-11-20T08:00:00Z)") != std::string::npos);
  }
  CHECK(message_of([] { picked("2026-11-19"); }).find("no snapshot at or before 2026-11-19T23:59:59Z") != std::string::npos);
  CHECK_ERROR_KIND(picked("zz"), ErrorKind::not_found);
  CHECK(message_of([] { picked("zz"); }).find("yesterday") != std::string::npos);  // says what it takes
  CHECK_ERROR_KIND(picked("0h"), ErrorKind::not_found);  // no zero age, and no such id
  CHECK_ERROR_KIND(client::pick_snapshot(json::array(), "pc-1", "latest"), ErrorKind::not_found);
  // A time before the first snapshot that is also an id prefix says how to mean the id.
  clock.set(at("2026-11-21T10:30:00Z"));
  CHECK(message_of([] { picked("3d"); }).find("give more of its id") != std::string::npos);
}

TEST_CASE("--device: an id, else a hostname one device has; several are listed") {
  World w;
  auto anonymous = w.client("");
  anonymous.call("device.register", {{"device_id", "dev-a"}, {"hostname", "pc-bob"}});
  anonymous.call("device.register", {{"device_id", "dev-b"}, {"hostname", "PC-Alice"}});
  anonymous.call("device.register", {{"device_id", "dev-c"}, {"hostname", "pc-alice"}});
  anonymous.call("device.register", {{"device_id", "pc-dana"}, {"hostname", "dev-a"}});  // an id wins over a hostname
  auto admin = w.client(w.admin_token);
  CHECK(client::resolve_device(admin, "dev-a") == "dev-a");
  CHECK(client::resolve_device(admin, "pc-bob") == "dev-a");
  CHECK(client::resolve_device(admin, "PC-BOB") == "dev-a");  // hostnames are case-insensitive
  CHECK(client::resolve_device(admin, "pc-dana") == "pc-dana");
  CHECK_ERROR_KIND(client::resolve_device(admin, "pc-alice"), ErrorKind::usage);
  std::string message = message_of([&] { client::resolve_device(admin, "pc-alice"); });
  CHECK(message.find("2 devices have this hostname") != std::string::npos);
  CHECK(message.find("dev-b") != std::string::npos);
  CHECK(message.find("dev-c") != std::string::npos);
  CHECK_ERROR_KIND(client::resolve_device(admin, "pc-nobody"), ErrorKind::not_found);
  CHECK_ERROR_KIND(client::resolve_device(admin, ""), ErrorKind::usage);
  // The server filters: a caller asking by hostname gets those devices, not the fleet.
  CHECK(admin.call("device.list", {{"hostname", "pc-bob"}})["devices"].size() == 1);
  CHECK(admin.call("device.list")["devices"].size() == 4);
}

TEST_CASE("--device: a device's name, before another device's hostname; a gone id kept on request") {
  World w;
  auto anonymous = w.client("");
  anonymous.call("device.register", {{"device_id", "dev-a"}, {"hostname", "pc-bob"}});
  anonymous.call("device.register", {{"device_id", "dev-b"}, {"hostname", "front-desk"}});
  auto admin = w.client(w.admin_token);
  CHECK(client::resolve_device(admin, "front-desk") == "dev-b");
  admin.call("device.rename", {{"device_id", "dev-a"}, {"name", "front-desk"}});
  CHECK(client::resolve_device(admin, "front-desk") == "dev-a");  // names are unique: a name wins
  CHECK(client::resolve_device(admin, "pc-bob") == "dev-a");
  CHECK(client::resolve_device(admin, "Front-Desk") == "dev-b");  // names are exact: this is dev-b's hostname
  CHECK(admin.call("device.list", {{"name", "front-desk"}})["devices"].size() == 1);
  CHECK(client::resolve_devices(admin, {"front-desk", "dev-b"}) == std::vector<std::string>{"dev-a", "dev-b"});
  CHECK_ERROR_KIND(client::resolve_device(admin, "dev-gone"), ErrorKind::not_found);
  CHECK(client::resolve_device(admin, "dev-gone", client::Unregistered::keep) == "dev-gone");
}

TEST_CASE("a snapshot by the device's hostname carries the device's id") {
  World w;
  fs::path root = w.dir / "root";
  fs::create_directories(root / "etc");
  std::ofstream(root / "etc/hostname") << "kiosk-hall\n";
  endpoint::CentralizeOptions co;
  co.root = root;
  co.device_id = "kiosk-01";
  co.state_dir = w.dir / "state";
  co.threads = 1;
  auto admin = w.client(w.admin_token);
  CHECK(endpoint::centralize(admin, co).state == "pending");
  admin.call("device.accept", {{"device_id", "kiosk-01"}});
  std::string first = endpoint::centralize(admin, co).snapshot["snapshot_id"];
  auto snap = client::resolve_snapshot(admin, "kiosk-hall", "latest");
  CHECK(snap["device_id"] == "kiosk-01");
  CHECK(snap["snapshot_id"] == first);
  CHECK(client::resolve_snapshot(admin, "kiosk-01", first.substr(0, 8))["snapshot_id"] == first);
  CHECK_ERROR_KIND(client::resolve_snapshot(admin, "kiosk-hall", "1w"), ErrorKind::not_found);  // before the first
}

TEST_SUITE_END();
