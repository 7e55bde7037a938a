#include <doctest/doctest.h>

#include <algorithm>

#include "libmirage/migrate/plan.hpp"
#include "tests/unit/flat_entries.hpp"

using namespace mirage;
using namespace mirage::layer;

namespace {

using test::image_of;
using test::op_for;
tree::Entry dir() { return test::dir_entry(); }
tree::Entry file(uint8_t content) { return test::file_entry(content); }
tree::Entry link(const std::string& target) {
  tree::Entry e;
  e.kind = tree::Kind::symlink;
  e.mode = 0777;
  e.target = target;
  e.size = target.size();
  return e;
}

Flat tree_of(std::initializer_list<std::pair<const std::string, tree::Entry>> files) {
  Flat f{{"/", dir()},        {"/etc", dir()},       {"/etc/ssh", dir()},         {"/usr", dir()},
         {"/usr/bin", dir()}, {"/home", dir()},      {"/home/u", dir()},          {"/etc/sudoers.d", dir()},
         {"/usr/local", dir()}, {"/etc/cron.d", dir()}};
  for (const auto& [p, e] : files) f[p] = e;
  return f;
}

const migrate::PathDecision* decision(const migrate::MigrationPlan& p, const std::string& path) {
  for (const auto& d : p.decisions)
    if (d.path == path) return &d;
  return nullptr;
}

}  // namespace

TEST_SUITE_BEGIN("migrate::plan");

TEST_CASE("the rules decide per path over the layer plan") {
  auto o = image_of(tree_of({{"/usr/bin/ls", file(1)}, {"/usr/bin/old-only", file(2)}, {"/etc/site.conf", file(3)},
                             {"/etc/sudoers.d/README", file(4)}, {"/etc/ssh/sshd_config", file(5)}}));
  auto n = image_of(tree_of({{"/usr/bin/ls", file(11)}, {"/usr/bin/new-only", file(12)}, {"/etc/site.conf", file(13)},
                             {"/etc/sudoers.d/README", file(14)}, {"/etc/ssh/sshd_config", file(15)}}));
  auto e = tree_of({{"/usr/bin/ls", file(1)},
                    {"/usr/bin/old-only", file(2)},
                    {"/etc/site.conf", file(23)},  // changed here, and by the new release
                    {"/etc/sudoers.d/README", file(4)},
                    {"/etc/sudoers.d/admins", file(24)},
                    {"/etc/ssh/sshd_config", file(25)},  // changed here only... and N changed it: not carried
                    {"/etc/ssh/ssh_host_dsa_key", file(26)},
                    {"/etc/ssh/ssh_host_ed25519_key", file(27)},
                    {"/etc/hostname", file(28)},
                    {"/etc/cron.d/local", file(29)},
                    {"/usr/bin/userprog", file(30)},
                    {"/usr/local/tool", file(31)},
                    {"/home/u/thesis", file(32)},
                    {"/etc/cups", dir()},
                    {"/etc/cups/printers.conf", file(33)},  // carried
                    {"/etc/cups/subscriptions.conf", file(34)},  // not
                    {"/opt-like", dir()},
                    {"/opt-like/x", file(35)}});
  auto mp = migrate::make_migration_plan(o, n, e, {}, {}, migrate::Rules::defaults(), LayerRules::defaults());
  auto& plan = mp.plan;
  CHECK(op_for(plan, "/usr/bin/ls")->action == Action::replace);
  CHECK(op_for(plan, "/usr/bin/new-only")->action == Action::create);
  CHECK(op_for(plan, "/usr/bin/old-only")->action == Action::remove);
  // Not carried: the new release's version, the local one not kept beside it.
  REQUIRE(op_for(plan, "/etc/site.conf"));
  CHECK(op_for(plan, "/etc/site.conf")->action == Action::replace);
  CHECK_FALSE(op_for(plan, "/etc/site.conf")->save_local);
  CHECK(op_for(plan, "/etc/ssh/sshd_config")->action == Action::replace);
  // Excluded from the sudoers component: the new release's README; the local rule stays.
  CHECK(op_for(plan, "/etc/sudoers.d/README")->action == Action::replace);
  CHECK_FALSE(op_for(plan, "/etc/sudoers.d/admins"));
  CHECK(decision(mp, "/etc/sudoers.d/admins")->op == "keep");
  CHECK(decision(mp, "/etc/sudoers.d/admins")->component == "sudoers");
  // Identity: kept, but the DSA key goes (unconditional exclude) and is reported.
  CHECK_FALSE(op_for(plan, "/etc/hostname"));
  CHECK_FALSE(op_for(plan, "/etc/ssh/ssh_host_ed25519_key"));
  REQUIRE(op_for(plan, "/etc/ssh/ssh_host_dsa_key"));
  CHECK(op_for(plan, "/etc/ssh/ssh_host_dsa_key")->action == Action::remove);
  CHECK(mp.removed_identity == std::vector<std::string>{"/etc/ssh/ssh_host_dsa_key"});
  // The user's program is not carried (it stays under /old-root); /usr/local and the user
  // area are never touched; a local cron job stays (3-way: the endpoint's own).
  CHECK(op_for(plan, "/usr/bin/userprog")->action == Action::remove);
  CHECK(decision(mp, "/usr/bin/userprog")->rule == "not-carried");
  CHECK_FALSE(op_for(plan, "/usr/local/tool"));
  CHECK_FALSE(op_for(plan, "/home/u/thesis"));
  CHECK_FALSE(op_for(plan, "/etc/cron.d/local"));
  // A directory that holds a carried path stays; one all of whose paths go, goes.
  CHECK(op_for(plan, "/etc/cups/subscriptions.conf")->action == Action::remove);
  CHECK_FALSE(op_for(plan, "/etc/cups/printers.conf"));
  CHECK_FALSE(op_for(plan, "/etc/cups"));
  CHECK(decision(mp, "/etc/cups")->op == "keep");
  CHECK(op_for(plan, "/opt-like")->action == Action::remove);
  CHECK(op_for(plan, "/opt-like/x")->action == Action::remove);
  // Writes first (parents first), then removes (children first).
  bool removing = false;
  for (const auto& op : plan.ops) {
    if (op.action == Action::remove) removing = true;
    CHECK((op.action == Action::remove) == removing);
  }
  // Nothing of N's files is on E: every byte of ls, new-only, site.conf, README, sshd_config comes.
  CHECK(plan.fetch_bytes == 50);
}

TEST_CASE("an enablement link stays only where the unit it enables is in the migrated system") {
  const std::string wants = "/etc/systemd/system/multi-user.target.wants/";
  auto units = [](Flat f) {
    for (const char* d : {"/etc/systemd", "/etc/systemd/system", "/etc/systemd/system/multi-user.target.wants", "/usr/lib",
                          "/usr/lib/systemd", "/usr/lib/systemd/system"})
      f[d] = dir();
    f["/lib"] = link("usr/lib");
    return f;
  };
  auto o = image_of(units(tree_of({{"/usr/lib/systemd/system/ssh.service", file(1)},
                                   {"/usr/lib/systemd/system/gone.service", file(2)},
                                   {"/usr/lib/systemd/system/getty@.service", file(3)}})));
  auto n = image_of(units(tree_of({{"/usr/lib/systemd/system/ssh.service", file(11)},
                                   {"/usr/lib/systemd/system/getty@.service", file(13)},
                                   {"/usr/lib/systemd/system/fresh.service", file(14)}})));
  auto e = units(tree_of({{"/usr/lib/systemd/system/ssh.service", file(1)},
                          {"/usr/lib/systemd/system/gone.service", file(2)},
                          {"/usr/lib/systemd/system/getty@.service", file(3)},
                          {"/etc/systemd/system/local.service", file(4)},
                          {wants + "local.service", link("/etc/systemd/system/local.service")},  // carried unit
                          {wants + "ssh.service", link("/lib/systemd/system/ssh.service")},  // through /lib -> usr/lib
                          {wants + "getty@tty1.service", link("/lib/systemd/system/getty@.service")},
                          {wants + "gone.service", link("/lib/systemd/system/gone.service")},  // N dropped it
                          {wants + "rel.service", link("../gone.service")},  // relative, to nothing
                          {"/etc/systemd/system/old-alias.service", link("/lib/systemd/system/gone.service")},
                          {"/etc/systemd/system/masked.service", link("/dev/null")}}));
  auto mp = migrate::make_migration_plan(o, n, e, {}, {}, migrate::Rules::defaults(), LayerRules::defaults());
  for (const char* kept : {"local.service", "ssh.service", "getty@tty1.service"}) {
    INFO(kept);
    CHECK_FALSE(op_for(mp.plan, wants + kept));
  }
  CHECK_FALSE(op_for(mp.plan, "/etc/systemd/system/masked.service"));
  CHECK(op_for(mp.plan, "/usr/lib/systemd/system/gone.service")->action == Action::remove);
  for (const auto& p : {wants + "gone.service", wants + "rel.service", std::string("/etc/systemd/system/old-alias.service")}) {
    INFO(p);
    REQUIRE(op_for(mp.plan, p));
    CHECK(op_for(mp.plan, p)->action == Action::remove);
    REQUIRE(decision(mp, p));
    CHECK(decision(mp, p)->op == "remove");
    CHECK(decision(mp, p)->why.find("dangling enablement") != std::string::npos);
  }
  std::vector<std::string> dangling = mp.dangling_enablement;
  std::sort(dangling.begin(), dangling.end());
  CHECK(dangling == std::vector<std::string>{"/etc/systemd/system/multi-user.target.wants/gone.service",
                                             "/etc/systemd/system/multi-user.target.wants/rel.service",
                                             "/etc/systemd/system/old-alias.service"});
  // The directory of the links stays: it holds links that stay.
  CHECK_FALSE(op_for(mp.plan, "/etc/systemd/system/multi-user.target.wants"));
}

TEST_CASE("a remapped account never gets an id an account of the old system had") {
  auto accounts = [](const char* passwd, const char* group) {
    return std::map<std::string, RecordSet>{{"/etc/passwd", parse_records(RecordFormat::colon_lines, passwd, "passwd")},
                                            {"/etc/group", parse_records(RecordFormat::colon_lines, group, "group")}};
  };
  auto o = image_of(tree_of({}));
  auto n = image_of(tree_of({}));
  // The old release had _oldsvc (999, dropped by the new one); the endpoint made a local
  // account at 990, the id the new release's _newsvc has; a user's primary group 998
  // has no group record. The highest free system id, 999, still owns _oldsvc's files.
  o.records = accounts("root:x:0:0::/root:/bin/sh\n_oldsvc:x:999:999::/:/usr/sbin/nologin\n",
                       "root:x:0:\n_oldsvc:x:999:\n");
  n.records = accounts("root:x:0:0::/root:/bin/sh\n_newsvc:x:990:990::/:/usr/sbin/nologin\n",
                       "root:x:0:\n_newsvc:x:990:\n");
  auto e_records = accounts(
      "root:x:0:0::/root:/bin/sh\n_oldsvc:x:999:999::/:/usr/sbin/nologin\nlocalsvc:x:990:990::/:/bin/sh\n"
      "lonely:x:997:998::/:/bin/sh\n",
      "root:x:0:\n_oldsvc:x:999:\nlocalsvc:x:990:\n");
  auto mp = migrate::make_migration_plan(o, n, tree_of({}), e_records, {}, migrate::Rules::defaults(), LayerRules::defaults());
  REQUIRE(mp.plan.new_ids.uid.count(990));
  REQUIRE(mp.plan.new_ids.gid.count(990));
  uint32_t uid = mp.plan.new_ids.uid.at(990), gid = mp.plan.new_ids.gid.at(990);
  CHECK(uid == 998);  // 999 (_oldsvc's, dropped) and 997 (lonely's) are not free
  CHECK(gid == 997);  // 999 (_oldsvc's) and 998 (lonely's primary group) are not free
  // The merge did drop _oldsvc: its id is retired, not free.
  auto& merged = mp.plan.merges.at("/etc/passwd").merged;
  CHECK(std::none_of(merged.begin(), merged.end(), [](const Record& r) { return r.key == "_oldsvc"; }));
}

TEST_CASE("the old-root holds the system area, not the user area nor what stays in place") {
  auto rules = migrate::Rules::defaults();
  auto lr = LayerRules::defaults();
  CHECK(migrate::goes_to_old_root(rules, lr, "/etc/passwd"));
  CHECK(migrate::goes_to_old_root(rules, lr, "/usr/bin/ls"));
  CHECK(migrate::goes_to_old_root(rules, lr, "/etc/ssh/ssh_host_dsa_key"));
  CHECK_FALSE(migrate::goes_to_old_root(rules, lr, "/"));
  CHECK_FALSE(migrate::goes_to_old_root(rules, lr, "/home"));
  CHECK_FALSE(migrate::goes_to_old_root(rules, lr, "/home/u/thesis"));
  CHECK_FALSE(migrate::goes_to_old_root(rules, lr, "/usr/local/bin/tool"));
  CHECK_FALSE(migrate::goes_to_old_root(rules, lr, "/old-root/abc/etc"));
}

TEST_CASE("packages: upgrades, the new release's, the old base's dropped ones, the user's to reinstall") {
  auto status = [](std::initializer_list<std::pair<const char*, const char*>> pkgs) {
    RecordSet rs;
    for (const auto& [name, version] : pkgs)
      rs.push_back({std::string(name) + ":amd64", std::string("Package: ") + name +
                                                      "\nStatus: install ok installed\nArchitecture: amd64\nVersion: " +
                                                      version + "\n\n"});
    return rs;
  };
  auto o = image_of(tree_of({}));
  auto n = image_of(tree_of({}));
  o.records["/var/lib/dpkg/status"] = status({{"bash", "5.2-1"}, {"oldlib", "1.0"}});
  n.records["/var/lib/dpkg/status"] = status({{"bash", "5.2.37-2"}, {"newlib", "2.0"}});
  std::map<std::string, RecordSet> e_records{
      {"/var/lib/dpkg/status", status({{"bash", "5.2-1"}, {"oldlib", "1.0"}, {"userpkg", "3.1"}})}};
  auto mp = migrate::make_migration_plan(o, n, tree_of({}), e_records, {}, migrate::Rules::defaults(), LayerRules::defaults());
  std::map<std::string, std::string> change;
  for (const auto& c : mp.packages) change[c.package] = c.change;
  CHECK(change["bash"] == "upgrade");
  CHECK(change["newlib"] == "install");
  CHECK(change["oldlib"] == "removed");
  CHECK(change["userpkg"] == "reinstall");
  CHECK(change.size() == 4);

  // A device never given a base: the old release's are told apart from the user's by
  // apt's automatic marks, Priority and being another package's dependency.
  auto empty = image_of(tree_of({}));
  e_records["/var/lib/dpkg/status"] = status({{"bash", "5.2-1"}, {"oldlib", "1.0"}, {"userpkg", "3.1"}, {"autolib", "1"}});
  e_records["/var/lib/dpkg/status"][0].text.insert(0, "Depends: oldlib (>= 1)\n");
  mp = migrate::make_migration_plan(empty, n, tree_of({}), e_records, {"autolib"}, migrate::Rules::defaults(),
                                    LayerRules::defaults());
  change.clear();
  for (const auto& c : mp.packages) change[c.package] = c.change;
  CHECK(change["oldlib"] == "removed");
  CHECK(change["autolib"] == "removed");
  CHECK(change["userpkg"] == "reinstall");
}

TEST_SUITE_END();
