#include <doctest/doctest.h>

#include "libmirage/migrate/rules.hpp"
#include "libmirage/util/error.hpp"
#include "tests/unit/check_error.hpp"

using namespace mirage;
using namespace mirage::migrate;
using nlohmann::json;

TEST_SUITE_BEGIN("migrate::Rules");

namespace {

json component(const std::string& name, const std::string& action, json include, json exclude = json::array()) {
  return {{"name", name}, {"action", action}, {"include", include}, {"exclude", exclude}};
}

Rules rules(json components, json unconditional = json::array()) {
  return Rules::from_json({{"version", 1}, {"components", components}, {"unconditional_exclude", unconditional}});
}

/// The message of the usage error `doc` gets.
std::string refusal(const json& doc) {
  try {
    Rules::from_json(doc);
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::usage);
    return e.what();
  }
  return "accepted";
}

}  // namespace

TEST_CASE("specificity: depth first, then literal characters; a bare name is below every anchored pattern") {
  CHECK(specificity("/etc") == Specificity{1, 3});
  CHECK(specificity("/etc/cron.d") == Specificity{2, 9});
  CHECK(specificity("/etc/*") == Specificity{2, 3});
  CHECK(specificity("/home/*/.ssh") == Specificity{3, 8});
  CHECK(specificity("/etc/ssh/ssh_host_*") == Specificity{3, 15});
  CHECK(specificity("/var/log/[a-z]?x") == Specificity{3, 7});     // the bracket and '?' count nothing
  CHECK(specificity("/a/\\*b") == Specificity{2, 3});              // an escaped '*' is a literal
  CHECK(specificity("/a/[bc") == Specificity{2, 4});               // an unclosed '[' is an ordinary character
  CHECK(specificity("/a/[]x]") == Specificity{2, 1});              // ']' first in a bracket is a member
  CHECK(specificity("*.swp") == Specificity{0, 4});
  CHECK(specificity("lost+found") < specificity("/x"));
  CHECK(specificity("/etc/cron.d") > specificity("/etc/*"));
  CHECK(specificity("/etc/*/x") > specificity("/etc/cron.daily"));  // depth before literals
}

TEST_CASE("within a component the most specific pattern decides") {
  auto r = rules(json::array({component("c", "keep-endpoint", {"/etc", "/etc/keep/this"}, {"/etc/keep"})}));
  auto e = r.explain("/etc/keep/other");
  CHECK(e.outcome == Outcome::excluded);
  CHECK(e.pattern == "/etc/keep");
  e = r.explain("/etc/keep/this/file");
  CHECK(e.outcome == Outcome::carried);
  CHECK(e.pattern == "/etc/keep/this");
  CHECK(e.action == Action::keep_endpoint);
  CHECK(e.reason.find("more specific than its exclude '/etc/keep'") != std::string::npos);
  e = r.explain("/etc/hosts");
  CHECK(e.outcome == Outcome::carried);
  CHECK(e.pattern == "/etc");
}

TEST_CASE("an exclude beats an include of equal specificity in the same component") {
  // Same depth, same literal count: "/etc/ab*" and "/etc/a*c" both match /etc/abc.
  REQUIRE(specificity("/etc/ab*") == specificity("/etc/a*c"));
  auto r = rules(json::array({component("c", "take-new", {"/etc/ab*"}, {"/etc/a*c"})}));
  auto e = r.explain("/etc/abc");
  CHECK(e.outcome == Outcome::excluded);
  CHECK(e.component == "c");
  CHECK(e.pattern == "/etc/a*c");
  CHECK(e.reason.find("an exclude wins a tie") != std::string::npos);
  // The very same pattern in both lists: excluded too.
  r = rules(json::array({component("c", "take-new", {"/etc/x"}, {"/etc/x"})}));
  CHECK(r.explain("/etc/x/y").outcome == Outcome::excluded);
  // Only one more literal character on the include side: it wins.
  r = rules(json::array({component("c", "take-new", {"/etc/abc"}, {"/etc/a*c"})}));
  CHECK(r.explain("/etc/abc").outcome == Outcome::carried);
}

TEST_CASE("components do not exclude for each other: another component's include still carries the path") {
  auto r = rules(json::array({component("a", "keep-endpoint", {"/etc/sudoers.d"}, {"/etc/sudoers.d/README"}),
                              component("b", "merge-3way", {"/etc"})}));
  auto e = r.explain("/etc/sudoers.d/README");
  CHECK(e.outcome == Outcome::carried);
  CHECK(e.component == "b");
  CHECK(e.action == Action::merge_3way);
  // Without b, only the exclusion is left.
  r = rules(json::array({component("a", "keep-endpoint", {"/etc/sudoers.d"}, {"/etc/sudoers.d/README"})}));
  e = r.explain("/etc/sudoers.d/README");
  CHECK(e.outcome == Outcome::excluded);
  CHECK_FALSE(e.action.has_value());
  CHECK(nlohmann::json(e)["action"] == "not-carried");
}

TEST_CASE("between components the most specific include wins, whatever the document order") {
  json a = component("broad", "keep-in-place", {"/usr/local"});
  json b = component("narrow", "keep-endpoint", {"/usr/local/share/ca-certificates"});
  for (const auto& order : {json::array({a, b}), json::array({b, a})}) {
    auto r = rules(order);
    CHECK(r.explain("/usr/local/share/ca-certificates/corp.crt").component == "narrow");
    CHECK(r.explain("/usr/local/bin/tool").component == "broad");
  }
}

TEST_CASE("a tie between components goes to the earlier one in the document, and the reason says so") {
  json a = component("first", "keep-endpoint", {"/etc/x*"});
  json b = component("second", "take-new", {"/etc/*y"});
  REQUIRE(specificity("/etc/x*") == specificity("/etc/*y"));
  auto e = rules(json::array({a, b})).explain("/etc/xy");
  CHECK(e.component == "first");
  CHECK(e.reason.find("component 'second' includes it as specifically") != std::string::npos);
  CHECK(rules(json::array({b, a})).explain("/etc/xy").component == "second");
}

TEST_CASE("unconditional_exclude beats every component, even a more specific include") {
  auto r = rules(json::array({component("ssh", "keep-endpoint", {"/etc/ssh/ssh_host_dsa_key"})}), {"/etc/ssh"});
  auto e = r.explain("/etc/ssh/ssh_host_dsa_key");
  CHECK(e.outcome == Outcome::unconditional);
  CHECK(e.pattern == "/etc/ssh");
  CHECK(e.component.empty());
  CHECK(r.explain("/etc/sshd").outcome == Outcome::unmatched);  // a pattern covers its subtree, not a longer name
}

TEST_CASE("bare names match at any depth and lose to anchored patterns") {
  auto r = rules(json::array({component("swap", "take-new", {"*.swp"}), component("home", "keep-in-place", {"/home"})}));
  CHECK(r.explain("/home/u/x.swp").component == "home");
  CHECK(r.explain("/var/x.swp").component == "swap");
  CHECK(r.explain("/var/x").outcome == Outcome::unmatched);
}

TEST_CASE("the shipped default rules parse and carry what the issue lists") {
  auto r = Rules::defaults();
  CHECK(r.name() == "debian-12-to-13");
  CHECK(json::parse(default_rules_text())["name"] == "debian-12-to-13");  // the text printed as it is
  struct Want {
    const char* path;
    const char* component;
    Action action;
  };
  for (const auto& w : std::initializer_list<Want>{
           {"/home/ana/thesis.odt", "user-area", Action::keep_in_place},
           {"/root/.bashrc", "user-area", Action::keep_in_place},
           {"/srv/www/index.html", "user-area", Action::keep_in_place},
           {"/etc/passwd", "accounts", Action::merge_records},
           {"/etc/gshadow", "accounts", Action::merge_records},
           {"/etc/NetworkManager/system-connections/office.nmconnection", "network", Action::keep_endpoint},
           {"/etc/network/interfaces", "network", Action::keep_endpoint},
           {"/etc/cups/printers.conf", "printers", Action::keep_endpoint},
           {"/var/spool/cron/crontabs/ana", "user-crontabs", Action::keep_endpoint},
           {"/etc/cron.d/backup", "system-cron", Action::merge_3way},
           {"/etc/sudoers.d/admins", "sudoers", Action::keep_endpoint},
           {"/etc/timezone", "locale-time-keyboard", Action::keep_endpoint},
           {"/etc/default/keyboard", "locale-time-keyboard", Action::keep_endpoint},
           {"/usr/local/share/ca-certificates/corp.crt", "ca-certificates", Action::keep_endpoint},
           {"/etc/systemd/system/backup.service", "systemd-units", Action::merge_3way},
           {"/usr/local/bin/tool", "local-software", Action::keep_in_place},
           {"/opt/vendor/app", "local-software", Action::keep_in_place},
           {"/etc/hostname", "identity", Action::keep_endpoint},
           {"/etc/ssh/ssh_host_ed25519_key", "identity", Action::keep_endpoint},
           {"/var/lib/mirage/device", "mirage", Action::keep_in_place},
       }) {
    CAPTURE(w.path);
    auto e = r.explain(w.path);
    CHECK(e.outcome == Outcome::carried);
    CHECK(e.component == w.component);
    CHECK(e.action == w.action);
  }
  for (const char* path : {"/var/cache/apt/pkgcache.bin", "/var/tmp/x", "/var/lib/apt/lists/deb.debian.org_dists",
                           "/etc/ld.so.cache", "/etc/ssh/ssh_host_dsa_key", "/etc/ssh/ssh_host_dsa_key.pub"}) {
    CAPTURE(path);
    CHECK(r.explain(path).outcome == Outcome::unconditional);
  }
  CHECK(r.explain("/etc/sudoers.d/README").outcome == Outcome::excluded);
  CHECK(r.explain("/usr/bin/ls").outcome == Outcome::unmatched);
  CHECK(r.explain("/etc/apt/sources.list").outcome == Outcome::unmatched);
  // What it prints round-trips.
  CHECK(Rules::from_json(r.to_json()).to_json() == r.to_json());
}

TEST_CASE("errors name the bad field by its path in the document") {
  json ok = {{"version", 1}, {"components", json::array({component("a", "take-new", {"/etc"})})}};
  CHECK(refusal(ok) == "accepted");
  auto with = [&](const json::json_pointer& ptr, json value) {
    json d = ok;
    d[ptr] = std::move(value);
    return refusal(d);
  };
  CHECK(with(json::json_pointer("/components/0/action"), "keep") ==
        "rules: components[0].action: 'keep' is not one of keep-endpoint, take-new, merge-3way, merge-records, keep-in-place");
  CHECK(with(json::json_pointer("/components/0/include/0"), 7) == "rules: components[0].include[0]: must be a string");
  CHECK(with(json::json_pointer("/components/0/include/1"), "etc/x").find("rules: components[0].include[1]: 'etc/x'") == 0);
  CHECK(with(json::json_pointer("/components/0/exclude"), json::array({"/a/../b"})).find("rules: components[0].exclude[0]") == 0);
  CHECK(with(json::json_pointer("/components/0/exclude"), json::array({"/a/"})).find("rules: components[0].exclude[0]") == 0);
  CHECK(with(json::json_pointer("/components/0/exclude"), json::array({""})) == "rules: components[0].exclude[0]: an empty pattern");
  CHECK(with(json::json_pointer("/components/0/colour"), "red").find("rules: components[0].colour: unknown field") == 0);
  CHECK(with(json::json_pointer("/components/0/name"), "").find("rules: components[0].name: must not be empty") == 0);
  CHECK(with(json::json_pointer("/components/0/include"), json::array()) ==
        "rules: components[0].include: a component includes at least one pattern");
  CHECK(with(json::json_pointer("/components/1"), component("a", "take-new", {"/x"})) ==
        "rules: components[1].name: 'a' is also components[0]'s name");
  CHECK(with(json::json_pointer("/unconditional_exclude"), "/x") == "rules: unconditional_exclude: must be an array of patterns");
  CHECK(with(json::json_pointer("/version"), 2) == "rules: version: unsupported version 2 (1)");
  CHECK(with(json::json_pointer("/extra"), 1).find("rules: extra: unknown field") == 0);
  CHECK(refusal(json::array()) == "rules: the document must be a JSON object");
  CHECK(refusal({{"version", 1}}) == "rules: components: missing");
}

TEST_CASE("sizes are bounded") {
  RulesLimits small;
  small.components = 2;
  small.patterns = 3;
  small.pattern_bytes = 16;
  json three = json::array({component("a", "take-new", {"/a"}), component("b", "take-new", {"/b"}),
                            component("c", "take-new", {"/c"})});
  CHECK(test::thrown_kind([&] { Rules::from_json({{"version", 1}, {"components", three}}, small); }) == "usage");
  json many = json::array({component("a", "take-new", {"/a", "/b"}, {"/c", "/d"})});
  try {
    Rules::from_json({{"version", 1}, {"components", many}}, small);
    FAIL("accepted");
  } catch (const Error& e) {
    CHECK(std::string(e.what()) == "rules: components[0].exclude[1]: more than 3 patterns in the document");
  }
  json long_one = json::array({component("a", "take-new", {"/" + std::string(16, 'x')})});
  CHECK(test::thrown_kind([&] { Rules::from_json({{"version", 1}, {"components", long_one}}, small); }) == "usage");
}

TEST_CASE("explain refuses a relative path") {
  CHECK(test::thrown_kind([] { Rules::defaults().explain("etc/passwd"); }) == "usage");
}

TEST_SUITE_END();
