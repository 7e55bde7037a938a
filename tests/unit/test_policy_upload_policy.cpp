#include <doctest/doctest.h>

#include <map>

#include "libmirage/policy/upload_policy.hpp"
#include "libmirage/util/error.hpp"
#include "tests/unit/check_error.hpp"

using namespace mirage;
using namespace mirage::policy;

TEST_SUITE_BEGIN("policy::UploadPolicy");

TEST_CASE("anchored rules cover the path and everything below it") {
  CHECK(rule_matches("/var/cache", "/var/cache"));
  CHECK(rule_matches("/var/cache", "/var/cache/apt/x.deb"));
  CHECK_FALSE(rule_matches("/var/cache", "/var/cachet"));
  CHECK_FALSE(rule_matches("/var/cache", "/srv/var/cache"));
  CHECK(rule_matches("/var/log/*.gz", "/var/log/syslog.1.gz"));
  CHECK_FALSE(rule_matches("/var/log/*.gz", "/var/log/sub/syslog.1.gz"));
}

TEST_CASE("bare names match at any depth") {
  CHECK(rule_matches("lost+found", "/lost+found"));
  CHECK(rule_matches("lost+found", "/home/lost+found/x"));
  CHECK(rule_matches("*.swp", "/home/u/.file.swp") == false);  // FNM_PERIOD: hidden needs an explicit dot
  CHECK(rule_matches("*.swp", "/home/u/file.swp"));
}

TEST_CASE("defaults leave runtime areas out and keep the system") {
  auto p = UploadPolicy::defaults();
  for (auto path : {"/proc", "/sys/kernel", "/tmp/x", "/var/cache/apt", "/swapfile", "/mnt/lost+found"})
    CHECK(p.classify(path, false) == Decision::skip);
  for (auto path : {"/etc/passwd", "/usr/bin/ls", "/home/u/doc", "/var/lib/dpkg/status"})
    CHECK(p.classify(path, false) == Decision::protect);
  CHECK(p.in_user_area("/home/u/doc"));
  CHECK_FALSE(p.in_user_area("/etc"));
}

TEST_CASE("exceptions win over rules and make the walk descend to them") {
  auto p = UploadPolicy::from_json(
      {{"version", 1}, {"unprotected", {"/var/cache"}}, {"exceptions", {"/var/cache/keep"}}, {"user_area", {"/home"}}});
  CHECK(p.classify("/var/cache", false) == Decision::exceptions);
  CHECK(p.classify("/var/cache/keep", true) == Decision::protect);
  CHECK(p.classify("/var/cache/keep/a", true) == Decision::protect);
  CHECK(p.classify("/var/cache/other", true) == Decision::skip);
}

TEST_CASE("malformed policies are refused with the field named") {
  CHECK_THROWS_WITH(UploadPolicy::from_json({{"unprotected", "/tmp"}}), doctest::Contains("unprotected"));
  CHECK_ERROR_KIND(UploadPolicy::from_json({{"unprotected", "/tmp"}}), ErrorKind::usage);
  CHECK_THROWS_WITH(UploadPolicy::from_json({{"bogus", 1}}), doctest::Contains("bogus"));
  CHECK_ERROR_KIND(UploadPolicy::from_json({{"bogus", 1}}), ErrorKind::usage);
  CHECK_ERROR_KIND(UploadPolicy::from_json({{"unprotected", {1}}}), ErrorKind::usage);
  CHECK_ERROR_KIND(UploadPolicy::from_json(nlohmann::json::array()), ErrorKind::usage);
}

TEST_SUITE_END();

TEST_SUITE_BEGIN("policy::UploadPolicy walk");

TEST_CASE("a top-down walk classifies every path as a whole-path check does") {
  auto p = UploadPolicy::from_json({{"unprotected", {"/var/cache", "*.tmp", "/srv/*/scratch"}},
                                    {"exceptions", {"/var/cache/keep"}}});
  // Walk order: each path's parent was classified first; a skipped directory is not entered.
  std::vector<std::string> paths = {"/var", "/var/cache", "/var/cache/keep", "/var/cache/keep/x",
                                    "/srv", "/srv/a", "/srv/a/scratch", "/home", "/home/u.tmp", "/home/u"};
  std::map<std::string, bool> inside;  // path -> its children are inside an unprotected dir
  for (const auto& path : paths) {
    std::string parent = path.substr(0, path.rfind('/'));
    bool in = inside.count(parent) ? inside[parent] : false;
    auto walked = p.classify(path, in, Ancestors::checked);
    auto whole = p.classify(path, in);
    CHECK_MESSAGE(walked == whole, path);
    inside[path] = in || walked == Decision::exceptions;
  }
  CHECK(p.classify("/srv/a/scratch", false, Ancestors::checked) == Decision::skip);
  CHECK(p.classify("/var/cache/keep/x", true, Ancestors::checked) == Decision::protect);
}

TEST_SUITE_END();

TEST_SUITE_BEGIN("policy::policy_document defaults");

TEST_CASE("fields left out of a policy document take their defaults") {
  // The README's example: only a retention block.
  auto doc = policy_document({{"retention", {{"last", 24}, {"hourly", 24}, {"daily", 7}, {"weekly", 4}, {"monthly", 12}}}});
  auto defaults = UploadPolicy::defaults().to_json();
  CHECK(doc["unprotected"] == defaults["unprotected"]);
  CHECK(doc["user_area"] == defaults["user_area"]);
  CHECK(doc["exceptions"] == defaults["exceptions"]);
  CHECK(doc["retention"]["daily"] == 7);
  auto p = UploadPolicy::from_json(doc);
  for (auto path : {"/proc/1", "/sys/kernel", "/dev/null", "/tmp/x", "/var/cache/apt"})
    CHECK(p.classify(path, false) == Decision::skip);
  CHECK(p.in_user_area("/home/u"));
}

TEST_CASE("a field given replaces its default, an empty list included") {
  auto p = UploadPolicy::from_json({{"unprotected", nlohmann::json::array()}});
  CHECK(p.classify("/tmp/x", false) == Decision::protect);
  CHECK(p.in_user_area("/home/u"));  // user_area left out: the default
  auto q = UploadPolicy::from_json({{"user_area", {"/data"}}});
  CHECK(q.in_user_area("/data/x"));
  CHECK_FALSE(q.in_user_area("/home/u"));
  CHECK(q.classify("/proc/1", false) == Decision::skip);
}

TEST_SUITE_END();
