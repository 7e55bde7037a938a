#include <doctest/doctest.h>

#include "libmirage/layer/records.hpp"
#include "libmirage/util/error.hpp"
#include "tests/unit/check_error.hpp"

using namespace mirage;
using namespace mirage::layer;

namespace {

std::vector<std::string> keys(const RecordSet& s) {
  std::vector<std::string> out;
  for (const auto& r : s) out.push_back(r.key);
  return out;
}

const char* k_status =
    "Package: base-files\nStatus: install ok installed\nArchitecture: amd64\nVersion: 12.4\n\n"
    "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.36-9\nDescription: GNU C\n multi line\n\n";

}  // namespace

TEST_SUITE_BEGIN("layer::records");

TEST_CASE("dpkg status parses into stanzas keyed by package and architecture and writes back byte for byte") {
  auto set = parse_records(RecordFormat::dpkg_status, k_status, "status");
  REQUIRE(set.size() == 2);
  CHECK(set[0].key == "base-files:amd64");
  CHECK(set[1].key == "libc6:amd64");
  CHECK(stanza_field(set[1].text, "Version") == "2.36-9");
  CHECK(format_records(RecordFormat::dpkg_status, set) == k_status);
}

TEST_CASE("a package given twice or a line without a key is refused") {
  std::string twice = std::string(k_status) + "Package: libc6\nArchitecture: amd64\n\n";
  CHECK_ERROR_KIND(parse_records(RecordFormat::dpkg_status, twice, "status"), ErrorKind::integrity);
  CHECK_ERROR_KIND(parse_records(RecordFormat::colon_lines, "root:x:0:0\nnocolon\n", "passwd"), ErrorKind::integrity);
  CHECK_ERROR_KIND(parse_records(RecordFormat::statoverride, "root root 0644\n", "statoverride"), ErrorKind::integrity);
}

TEST_CASE("colon files key by name; statoverride by path") {
  auto pw = parse_records(RecordFormat::colon_lines, "root:x:0:0:root:/root:/bin/bash\nbob:x:1000:1000::/home/bob:/bin/sh\n", "p");
  CHECK(keys(pw) == std::vector<std::string>{"root", "bob"});
  auto so = parse_records(RecordFormat::statoverride, "root crontab 2755 /usr/bin/crontab\n", "s");
  CHECK(so[0].key == "/usr/bin/crontab");
}

TEST_CASE("3-way merge keeps the endpoint's own records, local changes the layer left alone, and applies the layer's") {
  auto parse = [](const char* t) { return parse_records(RecordFormat::colon_lines, t, "passwd"); };
  auto o = parse("root:x:0:0::/root:/bin/sh\nold:x:5:5::/:/bin/false\ndaemon:x:1:1::/:/bin/false\n");
  auto n = parse("root:x:0:0::/root:/bin/sh\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\nsvc:x:100:100::/:/bin/false\n");
  auto e = parse("root:x:0:0::/root:/bin/zsh\nold:x:5:5::/:/bin/false\ndaemon:x:1:1::/:/bin/false\nbob:x:1000:1000::/home/bob:/bin/sh\n");
  auto m = merge3(o, n, e, true);
  CHECK(keys(m.merged) == std::vector<std::string>{"root", "daemon", "bob", "svc"});
  CHECK(m.merged[0].text == "root:x:0:0::/root:/bin/zsh\n");  // local change kept
  CHECK(m.merged[1].text == "daemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n");  // layer change wins
  CHECK(m.removed == std::vector<std::string>{"old"});
  CHECK(m.added == std::vector<std::string>{"svc"});
  CHECK(m.kept_local == std::vector<std::string>{"root"});
  // Without keep_local (enforce), the layer's version comes back.
  auto forced = merge3(o, n, e, false);
  CHECK(forced.merged[0].text == "root:x:0:0::/root:/bin/sh\n");
}

TEST_CASE("deltas replay an app layer's record changes") {
  auto before = parse_records(RecordFormat::dpkg_status, k_status, "s");
  auto after = before;
  after.pop_back();
  after.push_back({"hello:amd64", "Package: hello\nArchitecture: amd64\nVersion: 2.10-3\n"});
  auto d = diff_records(before, after);
  CHECK(d.remove == std::vector<std::string>{"libc6:amd64"});
  REQUIRE(d.upsert.size() == 1);
  nlohmann::json j = d;
  auto back = delta_from_json(RecordFormat::dpkg_status, j, "delta");
  auto set = before;
  apply_delta(set, back);
  CHECK(set == after);
  CHECK_ERROR_KIND(delta_from_json(RecordFormat::dpkg_status, nlohmann::json{{"upsert", 1}}, "d"), ErrorKind::integrity);
}

TEST_CASE("versions compare the way dpkg does") {
  CHECK(compare_versions("1.0", "1.0") == 0);
  CHECK(compare_versions("1.0", "1.1") < 0);
  CHECK(compare_versions("1.10", "1.9") > 0);
  CHECK(compare_versions("1.0~rc1", "1.0") < 0);
  CHECK(compare_versions("1:0.9", "2.0") > 0);
  CHECK(compare_versions("2.36-9+deb12u4", "2.36-9") > 0);
  CHECK(compare_versions("1.0-1", "1.0-1ubuntu1") < 0);
  CHECK(compare_versions("1.0a", "1.0") > 0);
  CHECK(compare_versions("1.0~", "1.0~~") > 0);
}

TEST_CASE("a layer account whose id is taken here gets a free one, and its group follows") {
  auto pw = parse_records(RecordFormat::colon_lines,
                          "root:x:0:0::/root:/bin/sh\nlocal:x:105:105::/:/bin/sh\nsvc:x:105:105::/:/bin/false\n", "p");
  auto gr = parse_records(RecordFormat::colon_lines, "root:x:0:\nlocal:x:105:\nsvc:x:105:\n", "g");
  auto map = remap_clashes(pw, gr, {"svc"}, {"svc"});
  REQUIRE(map.uid.count(105));
  REQUIRE(map.gid.count(105));
  CHECK(map.uid[105] != 105);
  CHECK(pw[2].text == "svc:x:" + std::to_string(map.uid[105]) + ":" + std::to_string(map.gid[105]) + "::/:/bin/false\n");
  CHECK(pw[1].text == "local:x:105:105::/:/bin/sh\n");  // the endpoint's own account is untouched
  // No clash, no change.
  auto pw2 = parse_records(RecordFormat::colon_lines, "svc:x:120:120::/:/bin/false\n", "p");
  RecordSet gr2;
  CHECK(remap_clashes(pw2, gr2, {"svc"}, {}).empty());
}

TEST_CASE("statoverride merges by path: the layer's overrides apply, the endpoint's own stay") {
  auto parse = [](const char* t) { return parse_records(RecordFormat::statoverride, t, "statoverride"); };
  auto o = parse("root crontab 2755 /usr/bin/crontab\n");
  auto n = parse("root crontab 2755 /usr/bin/crontab\nroot messagebus 4754 /usr/lib/dbus-1.0/dbus-daemon-launch-helper\n");
  auto e = parse("root crontab 2755 /usr/bin/crontab\nroot staff 0750 /usr/local/bin/mine\n");
  auto m = merge3(o, n, e, false);
  CHECK(keys(m.merged) == std::vector<std::string>{"/usr/bin/crontab", "/usr/local/bin/mine",
                                                   "/usr/lib/dbus-1.0/dbus-daemon-launch-helper"});
  CHECK(format_records(RecordFormat::statoverride, m.merged) ==
        "root crontab 2755 /usr/bin/crontab\nroot staff 0750 /usr/local/bin/mine\n"
        "root messagebus 4754 /usr/lib/dbus-1.0/dbus-daemon-launch-helper\n");
  // The layer dropping an override removes it.
  auto dropped = merge3(n, o, m.merged, false);
  CHECK(dropped.removed == std::vector<std::string>{"/usr/lib/dbus-1.0/dbus-daemon-launch-helper"});
}

TEST_SUITE_END();

TEST_CASE("merge drivers come from one table: path pattern to format, role and mode") {
  CHECK(merge_paths() == std::vector<std::string>{"/etc/group", "/etc/gshadow", "/etc/passwd", "/etc/shadow", "/etc/subgid",
                                                  "/etc/subuid", "/var/lib/dpkg/statoverride", "/var/lib/dpkg/status"});
  for (const auto& p : merge_paths()) REQUIRE(merge_driver(p) != nullptr);
  CHECK(merge_driver("/var/lib/dpkg/status")->role == DriverRole::packages);
  CHECK(merge_driver("/etc/passwd")->role == DriverRole::users);
  CHECK(merge_driver("/etc/group")->role == DriverRole::groups);
  CHECK(merge_driver("/etc/shadow")->mode == 0640);
  CHECK(merge_driver("/etc/subuid")->mode == 0644);
  CHECK(merge_format("/var/lib/dpkg/statoverride") == RecordFormat::statoverride);
  CHECK(merge_driver("/etc/passwd-") == nullptr);
  CHECK(merge_driver("/etc/sub/passwd") == nullptr);
  CHECK_FALSE(merge_format("/etc/hostname").has_value());
}
