#include <doctest/doctest.h>

#include "libmirage/layer/revert.hpp"
#include "tests/unit/check_error.hpp"
#include "tests/unit/flat_entries.hpp"

using namespace mirage;
using namespace mirage::layer;

namespace {

tree::Entry dir(int64_t mtime = 1) { return test::dir_entry(mtime); }
tree::Entry file(uint8_t content, int64_t mtime = 1) { return test::file_entry(content, mtime); }

Flat tree_of(std::initializer_list<std::pair<const std::string, tree::Entry>> entries) {
  Flat f{{"/", dir()},        {"/etc", dir()},    {"/usr", dir()}, {"/usr/bin", dir()},
         {"/home", dir()},    {"/home/u", dir()}, {"/tmp", dir()}};
  for (const auto& [p, e] : entries) f[p] = e;
  return f;
}

/// "action path" for every op, in plan order.
std::vector<std::string> ops_of(const Plan& p) {
  std::vector<std::string> out;
  for (const auto& op : p.ops) out.push_back(std::string(action_name(op.action)) + " " + op.path);
  return out;
}

// The snapshot: ls in /usr/bin, a bashrc, a user's notes. The endpoint now: ls deleted,
// bashrc edited, the notes changed, a user file and a machine file added, a file in /tmp.
const Flat k_s = tree_of({{"/usr/bin/ls", file(1)}, {"/etc/bash.bashrc", file(2)}, {"/home/u/notes", file(3)}});
const Flat k_e = tree_of({{"/etc/bash.bashrc", file(12)}, {"/home/u/notes", file(13)}, {"/home/u/new", file(14)},
                          {"/usr/bin/mine", file(15)}});

}  // namespace

TEST_SUITE_BEGIN("layer::revert");

TEST_CASE("system: the machine area becomes the snapshot's, the user area stays") {
  auto plan = make_revert_plan(k_s, k_e, RevertScope::system, policy::UploadPolicy::defaults());
  CHECK(ops_of(plan) == std::vector<std::string>{"remove /usr/bin/mine", "replace /etc/bash.bashrc", "create /usr/bin/ls",
                                                 "metadata /etc", "metadata /usr/bin"});
  CHECK(plan.fetch_bytes == 20);  // neither the old bashrc's chunk nor ls's is on the endpoint
}

TEST_CASE("full: everything becomes the snapshot's; user-data: only the user area") {
  auto full = make_revert_plan(k_s, k_e, RevertScope::full, policy::UploadPolicy::defaults());
  CHECK(ops_of(full) == std::vector<std::string>{"remove /usr/bin/mine", "remove /home/u/new", "replace /etc/bash.bashrc",
                                                 "replace /home/u/notes", "create /usr/bin/ls", "metadata /etc",
                                                 "metadata /home/u", "metadata /usr/bin"});
  auto user = make_revert_plan(k_s, k_e, RevertScope::user_data, policy::UploadPolicy::defaults());
  CHECK(ops_of(user) == std::vector<std::string>{"remove /home/u/new", "replace /home/u/notes", "metadata /home/u"});
}

TEST_CASE("nothing to do when the endpoint is the snapshot; bytes on the endpoint are reused") {
  CHECK(make_revert_plan(k_s, k_s, RevertScope::full, policy::UploadPolicy::defaults()).ops.empty());
  // ls deleted, but a copy of its content still on the endpoint elsewhere: nothing to fetch.
  auto e = k_s;
  e.erase("/usr/bin/ls");
  e["/usr/bin/ls.bak"] = file(1);
  auto plan = make_revert_plan(k_s, e, RevertScope::system, policy::UploadPolicy::defaults());
  CHECK(plan.fetch_bytes == 0);
  CHECK(plan.local_bytes == 10);
}

TEST_CASE("metadata only where only metadata differs") {
  auto e = k_s;
  e["/etc/bash.bashrc"].mode = 0600;
  auto plan = make_revert_plan(k_s, e, RevertScope::system, policy::UploadPolicy::defaults());
  CHECK(ops_of(plan) == std::vector<std::string>{"metadata /etc/bash.bashrc"});
}

TEST_CASE("the unprotected area is left aside, but a missing mount point comes back") {
  auto e = k_s;
  e["/tmp/scratch"] = file(9);  // (a scan never has it; a changed policy may)
  e["/tmp"].mtime_ns = 99;
  CHECK(make_revert_plan(k_s, e, RevertScope::full, policy::UploadPolicy::defaults()).ops.empty());
  e.erase("/tmp/scratch");
  e.erase("/tmp");
  CHECK(ops_of(make_revert_plan(k_s, e, RevertScope::full, policy::UploadPolicy::defaults())) ==
        std::vector<std::string>{"create /tmp"});
}

TEST_CASE("a kind changed: a directory is emptied and removed before a file takes its place, and back") {
  auto s = k_s;
  s["/usr/lib"] = file(5);  // a file in S where E has a directory
  auto e = k_s;
  e["/usr/lib"] = dir();
  e["/usr/lib/x.so"] = file(6);
  e["/usr/bin/ls"] = file(7);  // a file in E where S has a directory
  s.erase("/usr/bin/ls");
  s["/usr/bin/ls"] = dir();
  s["/usr/bin/ls/inner"] = file(8);
  auto plan = make_revert_plan(s, e, RevertScope::system, policy::UploadPolicy::defaults());
  CHECK(ops_of(plan) == std::vector<std::string>{"remove /usr/lib/x.so", "remove /usr/lib", "replace /usr/bin/ls",
                                                 "create /usr/bin/ls/inner", "create /usr/lib",
                                                 "remove /usr/bin/ls.mirage-local", "metadata /usr",
                                                 "metadata /usr/bin"});
}

TEST_CASE("a hardlink group is written whole when one member is") {
  auto s = k_s;
  s["/usr/bin/a"] = file(4);
  s["/usr/bin/a"].link_group = "/usr/bin/a";
  s["/usr/bin/b"] = s["/usr/bin/a"];
  auto e = s;
  e["/usr/bin/b"] = file(4);  // the link broken on the endpoint (same content, another inode)
  auto plan = make_revert_plan(s, e, RevertScope::system, policy::UploadPolicy::defaults());
  CHECK(ops_of(plan) == std::vector<std::string>{"replace /usr/bin/a", "replace /usr/bin/b", "metadata /usr/bin"});
}

TEST_CASE("mode names") {
  CHECK(scope_from_name("user-data") == RevertScope::user_data);
  CHECK(scope_name(RevertScope::system) == "system");
  CHECK_ERROR_KIND(scope_from_name("everything"), ErrorKind::usage);
}

TEST_SUITE_END();
