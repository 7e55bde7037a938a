#include <doctest/doctest.h>

#include "libmirage/layer/plan.hpp"
#include "tests/unit/flat_entries.hpp"

using namespace mirage;
using namespace mirage::layer;

namespace {

using test::image_of;
using test::op_for;
tree::Entry dir() { return test::dir_entry(); }
tree::Entry file(uint8_t content, int64_t mtime = 1) { return test::file_entry(content, mtime); }

Flat tree_of(std::initializer_list<std::pair<const std::string, tree::Entry>> files) {
  Flat f{{"/", dir()}, {"/etc", dir()}, {"/usr", dir()}, {"/usr/bin", dir()}, {"/home", dir()}, {"/home/u", dir()}};
  for (const auto& [p, e] : files) f[p] = e;
  return f;
}

}  // namespace

TEST_SUITE_BEGIN("layer::plan");

TEST_CASE("the 3-way rules of DESIGN.md section 5") {
  auto o = image_of(tree_of({{"/usr/bin/a", file(1)}, {"/usr/bin/dropped", file(2)}, {"/etc/local.conf", file(3)},
                             {"/etc/both.conf", file(4)}, {"/etc/hostname", file(5)}}));
  auto n = image_of(tree_of({{"/usr/bin/a", file(11)}, {"/etc/local.conf", file(3)}, {"/etc/both.conf", file(14)},
                             {"/usr/bin/new", file(6)}, {"/etc/hostname", file(15)}, {"/home/u/x", file(16)}}));
  auto e = tree_of({{"/usr/bin/a", file(1)}, {"/usr/bin/dropped", file(2)}, {"/etc/local.conf", file(23)},
                    {"/etc/both.conf", file(24)}, {"/etc/hostname", file(25)}, {"/usr/bin/mine", file(26)},
                    {"/home/u/x", file(27)}});
  auto plan = make_plan(o, n, e, {}, LayerRules::defaults(), {});
  REQUIRE(op_for(plan, "/usr/bin/a"));
  CHECK(op_for(plan, "/usr/bin/a")->action == Action::replace);
  CHECK(op_for(plan, "/usr/bin/new")->action == Action::create);
  CHECK(op_for(plan, "/usr/bin/dropped")->action == Action::remove);
  CHECK_FALSE(op_for(plan, "/etc/local.conf"));  // kept (reported only with report_kept)
  CHECK(plan.counts["keep_local"] == 1);
  REQUIRE(op_for(plan, "/etc/both.conf"));
  CHECK(op_for(plan, "/etc/both.conf")->save_local);
  CHECK_FALSE(op_for(plan, "/etc/hostname"));  // identity
  CHECK_FALSE(op_for(plan, "/home/u/x"));      // user area
  CHECK_FALSE(op_for(plan, "/usr/bin/mine"));  // the user's own
  CHECK(plan.fetch_bytes == 30);               // a, both.conf and new: no chunk of theirs is on E

  // Enforce: local changes go back too; remove_user_apps also drops the user's program.
  PlanOptions enforce;
  enforce.keep_local_changes = false;
  enforce.remove_user_apps = true;
  auto o2 = n;
  auto forced = make_plan(o2, n, e, {}, LayerRules::defaults(), enforce);
  CHECK(op_for(forced, "/etc/local.conf")->action == Action::replace);
  CHECK(op_for(forced, "/usr/bin/mine")->action == Action::remove);
  CHECK_FALSE(op_for(forced, "/home/u/x"));
}

TEST_CASE("equal content with other metadata moves no bytes; equal entries do nothing") {
  auto n = image_of(tree_of({{"/usr/bin/a", file(1, 5)}, {"/usr/bin/b", file(2)}}));
  auto e = tree_of({{"/usr/bin/a", file(1, 9)}, {"/usr/bin/b", file(2)}});
  Image o;
  auto plan = make_plan(o, n, e, {}, LayerRules::defaults(), {});
  REQUIRE(op_for(plan, "/usr/bin/a"));
  CHECK(op_for(plan, "/usr/bin/a")->action == Action::metadata);
  CHECK_FALSE(op_for(plan, "/usr/bin/b"));
  CHECK(plan.fetch_bytes == 0);
}

TEST_CASE("a chunk the endpoint already has elsewhere is reused, not fetched") {
  auto n = image_of(tree_of({{"/usr/bin/copy", file(7)}}));
  auto e = tree_of({{"/usr/bin/original", file(7)}});
  Image o;
  auto plan = make_plan(o, n, e, {}, LayerRules::defaults(), {});
  CHECK(plan.fetch_bytes == 0);
  CHECK(plan.local_bytes == 10);
}

TEST_CASE("do-not-override paths are written only where missing") {
  auto n = image_of(tree_of({{"/etc/ld.so.cache", file(1)}}));
  Image o;
  auto with = tree_of({{"/etc/ld.so.cache", file(2)}});
  CHECK_FALSE(op_for(make_plan(o, n, with, {}, LayerRules::defaults(), {}), "/etc/ld.so.cache"));
  auto without = tree_of({});
  auto plan = make_plan(o, n, without, {}, LayerRules::defaults(), {});
  REQUIRE(op_for(plan, "/etc/ld.so.cache"));
  CHECK(op_for(plan, "/etc/ld.so.cache")->action == Action::create);
}

TEST_CASE("a reported plan counts each action as often as it lists it") {
  // A do-not-override path the endpoint has (kept), a path only the endpoint has (kept),
  // and a directory whose contents change (its times set back: metadata only).
  auto n = image_of(tree_of({{"/etc/ld.so.cache", file(1)}, {"/usr/bin/new", file(2)}}));
  auto e = tree_of({{"/etc/ld.so.cache", file(3)}, {"/usr/bin/mine", file(4)}});
  e["/usr/bin"].mtime_ns = 77;
  Image o;
  PlanOptions reported;
  reported.report_kept = true;
  auto plan = make_plan(o, n, e, {}, LayerRules::defaults(), reported);
  REQUIRE(op_for(plan, "/etc/ld.so.cache"));
  CHECK(op_for(plan, "/etc/ld.so.cache")->action == Action::keep_user);
  REQUIRE(op_for(plan, "/usr/bin"));
  CHECK(op_for(plan, "/usr/bin")->action == Action::metadata);
  std::map<std::string, uint64_t> listed;
  for (const auto& op : plan.ops) listed[std::string(action_name(op.action))]++;
  CHECK(listed == plan.counts);
}

TEST_SUITE_END();
