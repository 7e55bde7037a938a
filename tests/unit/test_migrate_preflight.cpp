#include <doctest/doctest.h>

#include <map>

#include "libmirage/migrate/preflight.hpp"
#include "libmirage/util/error.hpp"
#include "tests/unit/check_error.hpp"

using namespace mirage;
using namespace mirage::migrate;
using nlohmann::json;

TEST_SUITE_BEGIN("migrate::preflight");

namespace {

/// A tree in memory: files by path; directories are what the paths imply.
class MapTree : public TreeReader {
 public:
  std::map<std::string, std::string> files;
  std::optional<std::string> read(const std::string& path, uint64_t max_bytes) override {
    auto it = files.find(path);
    if (it == files.end()) return std::nullopt;
    if (it->second.size() > max_bytes) throw Error(ErrorKind::usage, path + ": too large");
    return it->second;
  }
  std::vector<std::string> list(const std::string& path) override {
    std::set<std::string> names;
    std::string prefix = path + "/";
    for (const auto& [p, content] : files)
      if (p.starts_with(prefix)) names.insert(p.substr(prefix.size(), p.find('/', prefix.size()) - prefix.size()));
    return {names.begin(), names.end()};
  }
};

std::string stanza(const std::string& name, const std::string& status, const std::string& arch = "amd64") {
  return "Package: " + name + "\nStatus: " + status + "\nArchitecture: " + arch + "\nVersion: 1.0\n\n";
}

/// A clean bookworm system: dpkg, bash, apt; Debian sources only; an ed25519 host key.
MapTree clean() {
  MapTree t;
  t.files["/etc/debian_version"] = "12.7\n";
  t.files["/var/lib/dpkg/status"] =
      stanza("dpkg", "install ok installed") + stanza("bash", "install ok installed") + stanza("apt", "install ok installed");
  t.files["/var/lib/dpkg/arch"] = "amd64\ni386\n";
  t.files["/etc/apt/sources.list"] =
      "# the mirror\n"
      "deb http://deb.debian.org/debian bookworm main contrib non-free non-free-firmware\n"
      "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-updates main\n"
      "deb-src http://security.debian.org/debian-security bookworm-security main\n";
  t.files["/etc/apt/sources.list.d/backports.sources"] =
      "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\n";
  t.files["/etc/ssh/ssh_host_ed25519_key"] = "k";
  return t;
}

NewBase trixie(bool with_lists) {
  NewBase b;
  b.ref = "trixie@1";
  b.size_bytes = 1000;
  b.packages = {"dpkg", "bash", "apt"};
  if (with_lists) b.available = std::set<std::string>{"dpkg", "bash", "apt", "vim", "curl"};
  return b;
}

std::vector<std::string> codes(const Report& r) {
  std::vector<std::string> out;
  for (const auto& f : r.findings) out.push_back(f.code);
  return out;
}

const Finding& finding(const Report& r, const std::string& code) {
  for (const auto& f : r.findings)
    if (f.code == code) return f;
  FAIL("no finding " << code);
  throw 0;
}

}  // namespace

TEST_CASE("a clean bookworm system with a base and known free space has no finding") {
  auto t = clean();
  auto r = preflight(t, {trixie(true), 5000, {}});
  CHECK(codes(r).empty());
  CHECK_FALSE(r.inhibited());
  CHECK(json(r)["counts"] == json{{"inhibitor", 0}, {"warning", 0}, {"info", 0}});
}

TEST_CASE("without a base or free space the checks that need them say they are unknown") {
  auto t = clean();
  t.files["/var/lib/dpkg/status"] += stanza("vim", "install ok installed");
  auto r = preflight(t, {std::nullopt, std::nullopt, {}});
  CHECK(codes(r) == std::vector<std::string>{"disk.free-unknown", "packages.unknown"});
  CHECK_FALSE(r.inhibited());
  // Without a base, every installed package is "not in the base".
  CHECK(finding(r, "packages.unknown").packages == std::vector<std::string>{"dpkg", "bash", "apt", "vim"});
  r = preflight(t, {trixie(false), std::nullopt, {}});
  CHECK(finding(r, "disk.free-unknown").message.find("inventory") != std::string::npos);
  CHECK(finding(r, "packages.unknown").packages == std::vector<std::string>{"vim"});
}

TEST_CASE("dpkg audit states and reinstreq are inhibitors, config-files and not-installed are not") {
  auto t = clean();
  t.files["/var/lib/dpkg/status"] += stanza("a", "install ok half-installed") + stanza("b", "install ok half-configured") +
                                     stanza("c", "install ok unpacked") + stanza("d", "install ok triggers-awaited") +
                                     stanza("e", "install ok triggers-pending") + stanza("f", "install reinstreq installed") +
                                     stanza("g", "deinstall ok config-files") + stanza("h", "purge ok not-installed");
  auto r = preflight(t, {trixie(true), 5000, {}});
  CHECK(r.inhibited());
  const auto& f = finding(r, "dpkg.audit");
  CHECK(f.severity == Severity::inhibitor);
  CHECK(f.packages == std::vector<std::string>{"a", "b", "c", "d", "e", "f"});
  CHECK(f.message.find("f (reinstreq installed)") != std::string::npos);
}

TEST_CASE("held packages are an inhibitor") {
  auto t = clean();
  t.files["/var/lib/dpkg/status"] += stanza("vim", "hold ok installed");
  auto r = preflight(t, {trixie(true), 5000, {}});
  CHECK(codes(r) == std::vector<std::string>{"packages.held"});
  CHECK(finding(r, "packages.held").packages == std::vector<std::string>{"vim"});
}

TEST_CASE("apt sources: the bookworm suites of Debian's components map, a third-party repository does not") {
  auto t = clean();
  t.files["/etc/apt/sources.list.d/docker.list"] =
      "deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/debian bookworm stable\n";
  t.files["/etc/apt/sources.list.d/old.list"] = "# deb http://deb.debian.org/debian bullseye main\n";  // a comment
  t.files["/etc/apt/sources.list.d/vendor.sources"] =
      "Types: deb\nURIs: https://repo.vendor.example/apt\nSuites: stable\nComponents: main\n\n"
      "Enabled: no\nTypes: deb\nURIs: https://off.example\nSuites: sid\nComponents: main\n";
  t.files["/etc/apt/sources.list.d/ignored.txt"] = "deb http://x.example sid main\n";  // apt reads .list and .sources only
  auto r = preflight(t, {trixie(true), 5000, {}});
  CHECK(codes(r) == std::vector<std::string>{"apt.unmappable-source"});
  const auto& f = finding(r, "apt.unmappable-source");
  CHECK(f.paths == std::vector<std::string>{"/etc/apt/sources.list.d/docker.list:1", "/etc/apt/sources.list.d/vendor.sources:1"});
  CHECK(f.message.find("https://download.docker.com/linux/debian bookworm stable") != std::string::npos);
  // A Debian suite the rules do not map (sid) is refused as well.
  t = clean();
  t.files["/etc/apt/sources.list"] += "deb http://deb.debian.org/debian sid main\n";
  CHECK(codes(preflight(t, {trixie(true), 5000, {}})) == std::vector<std::string>{"apt.unmappable-source"});
}

TEST_CASE("architectures: i386 as a foreign one stays, mips64el foreign or i386 native do not") {
  auto t = clean();
  CHECK(codes(preflight(t, {trixie(true), 5000, {}})).empty());  // amd64 with i386 foreign
  t.files["/var/lib/dpkg/arch"] = "amd64\nmips64el\n";
  auto r = preflight(t, {trixie(true), 5000, {}});
  CHECK(codes(r) == std::vector<std::string>{"arch.dropped"});
  CHECK(finding(r, "arch.dropped").packages == std::vector<std::string>{"mips64el"});
  t = clean();
  t.files["/var/lib/dpkg/status"] = stanza("dpkg", "install ok installed", "i386");
  t.files["/var/lib/dpkg/arch"] = "i386\n";
  r = preflight(t, {trixie(true), 5000, {}});
  CHECK(codes(r) == std::vector<std::string>{"arch.dropped"});
  CHECK(finding(r, "arch.dropped").message.find("i386 (native)") != std::string::npos);
}

TEST_CASE("DSA host keys are an inhibitor naming each file") {
  auto t = clean();
  t.files["/etc/ssh/ssh_host_dsa_key"] = "k";
  t.files["/etc/ssh/ssh_host_dsa_key.pub"] = "p";
  auto r = preflight(t, {trixie(true), 5000, {}});
  CHECK(codes(r) == std::vector<std::string>{"ssh.dsa-host-key"});
  CHECK(finding(r, "ssh.dsa-host-key").paths ==
        std::vector<std::string>{"/etc/ssh/ssh_host_dsa_key", "/etc/ssh/ssh_host_dsa_key.pub"});
}

TEST_CASE("free space below the base's size plus 10% is an inhibitor; exactly enough is not") {
  auto t = clean();
  CHECK(codes(preflight(t, {trixie(true), 1100, {}})).empty());
  auto r = preflight(t, {trixie(true), 1099, {}});
  CHECK(codes(r) == std::vector<std::string>{"disk.free"});
  CHECK(finding(r, "disk.free").message.find("1100 bytes") != std::string::npos);
}

TEST_CASE("user packages without a candidate in the new base's lists are an inhibitor") {
  auto t = clean();
  t.files["/var/lib/dpkg/status"] += stanza("vim", "install ok installed") + stanza("legacy-tool", "install ok installed") +
                                     stanza("gone", "deinstall ok config-files");
  auto r = preflight(t, {trixie(true), 5000, {}});
  CHECK(codes(r) == std::vector<std::string>{"packages.no-candidate"});
  CHECK(finding(r, "packages.no-candidate").packages == std::vector<std::string>{"legacy-tool"});
}

TEST_CASE("the old release's packages the new base lacks are replaced, not inhibitors: only the user's are") {
  // bookworm's names trixie renamed (libapt-pkg6.0 -> 7.0, libgnutls30 -> 30t64) are
  // dependencies, apt's automatic ones, required or important, or the old base's.
  auto t = clean();
  auto with = [](std::string stanza_text, const std::string& fields) { return stanza_text.insert(stanza_text.size() - 1, fields); };
  t.files["/var/lib/dpkg/status"] =
      with(stanza("apt", "install ok installed"), "Depends: libapt-pkg6.0 (>= 2.6.1), libgnutls30 (>= 3.7.5)\n") +
      stanza("dpkg", "install ok installed") + stanza("bash", "install ok installed") +
      stanza("libapt-pkg6.0", "install ok installed") + stanza("libgnutls30", "install ok installed") +
      with(stanza("e2fsprogs", "install ok installed"), "Priority: required\n") +
      with(stanza("gpgv", "install ok installed"), "Priority: important\n") + stanza("libauto1", "install ok installed") +
      with(stanza("whiptail", "install ok installed"), "Depends: debconf (>= 0.5) | debconf-2.0, libc6:any\n") +
      with(stanza("cdebconf", "install ok installed"), "Provides: debconf-2.0\n") +
      stanza("legacy-tool", "install ok installed") + stanza("vim", "install ok installed") +
      stanza("old-base-tool", "install ok installed");
  t.files["/var/lib/apt/extended_states"] = "Package: libauto1\nArchitecture: amd64\nAuto-Installed: 1\n\n"
                                            "Package: vim\nArchitecture: amd64\nAuto-Installed: 0\n";
  PreflightInput in{trixie(true), 5000, {"old-base-tool"}};
  auto r = preflight(t, in);
  CHECK(codes(r) == std::vector<std::string>{"packages.replaced", "packages.no-candidate"});
  CHECK(finding(r, "packages.no-candidate").packages == std::vector<std::string>{"whiptail", "legacy-tool"});
  CHECK(finding(r, "packages.replaced").severity == Severity::info);
  CHECK(finding(r, "packages.replaced").packages ==
        std::vector<std::string>{"libapt-pkg6.0", "libgnutls30", "e2fsprogs", "gpgv", "libauto1", "cdebconf", "old-base-tool"});
  // The same device given both in its old base: nothing the user chose is missing.
  in.old_base.insert({"legacy-tool", "whiptail"});
  CHECK_FALSE(preflight(t, in).inhibited());
  // Without a base the user's own are unknown, the old release's not listed.
  r = preflight(t, {std::nullopt, 5000, {}});
  CHECK(finding(r, "packages.unknown").packages == std::vector<std::string>{"apt", "dpkg", "bash", "whiptail", "legacy-tool", "vim", "old-base-tool"});
}

TEST_CASE("a tree that is not Debian 12 is an inhibitor") {
  auto t = clean();
  t.files["/etc/debian_version"] = "13.1\n";
  CHECK(codes(preflight(t, {trixie(true), 5000, {}})) == std::vector<std::string>{"os.release"});
  t.files.erase("/etc/debian_version");
  CHECK(finding(preflight(t, {trixie(true), 5000, {}}), "os.release").message.find("not a Debian system") != std::string::npos);
}

TEST_CASE("describe_base reads the base's installed packages and its apt lists") {
  MapTree base;
  base.files["/var/lib/apt/lists/deb.debian.org_debian_dists_trixie_main_binary-amd64_Packages"] =
      "Package: vim\nVersion: 2\n\nPackage: curl\nVersion: 8\n";
  base.files["/var/lib/apt/lists/lock"] = "";
  auto b = describe_base(base, "trixie@2", 42, stanza("dpkg", "install ok installed") + stanza("x", "deinstall ok config-files"));
  CHECK(b.packages == std::set<std::string>{"dpkg"});
  REQUIRE(b.available);
  CHECK(*b.available == std::set<std::string>{"curl", "dpkg", "vim"});
  MapTree bare;
  CHECK_FALSE(describe_base(bare, "trixie@2", 42, "").available);
}

TEST_CASE("every finding together, in a stable order, and the JSON a tool prints") {
  auto t = clean();
  t.files["/var/lib/dpkg/status"] += stanza("broken", "install reinstreq half-installed") + stanza("vim", "hold ok installed");
  t.files["/etc/apt/sources.list"] += "deb https://repo.example/apt bookworm main\n";  // third-party, but Debian-like
  t.files["/etc/ssh/ssh_host_dsa_key"] = "k";
  auto r = preflight(t, {trixie(true), 10, {}});
  // repo.example names a bookworm suite and main: it maps (only suites and components are checked).
  CHECK(codes(r) == std::vector<std::string>{"dpkg.audit", "packages.held", "ssh.dsa-host-key", "disk.free"});
  json j = r;
  CHECK(j["inhibited"] == true);
  CHECK(j["counts"]["inhibitor"] == 4);
  CHECK(j["findings"][0]["severity"] == "inhibitor");
  CHECK(j["findings"][0]["packages"] == json{"broken"});
}

TEST_SUITE_END();
