#include "libmirage/migrate/preflight.hpp"

#include <algorithm>
#include <map>
#include <sstream>

#include "libmirage/browse/browse.hpp"
#include "libmirage/layer/image.hpp"
#include "libmirage/layer/records.hpp"
#include "libmirage/migrate/packages.hpp"
#include "libmirage/store/repository.hpp"
#include "libmirage/util/error.hpp"
#include "libmirage/util/text.hpp"

namespace mirage::migrate {

using nlohmann::json;

namespace {

const std::set<std::string> k_mapped_suites = {"bookworm", "bookworm-updates", "bookworm-security", "bookworm-backports"};
const std::set<std::string> k_debian_components = {"main", "contrib", "non-free", "non-free-firmware"};
// Debian 13 release notes, "What's new", supported architectures: amd64, arm64, armel,
// armhf, ppc64el, riscv64, s390x; i386 is no longer a regular architecture (no kernel, no
// installer: only 32-bit userland on amd64, as a foreign architecture); mipsel and
// mips64el are gone (https://www.debian.org/releases/trixie/release-notes/whats-new.en.html).
const std::set<std::string> k_dropped_foreign = {"mipsel", "mips64el"};
const std::set<std::string> k_dropped_native = {"i386", "mipsel", "mips64el"};
// dpkg --audit: what a package stuck between states looks like in its Status field.
const std::set<std::string> k_audit_states = {"half-installed", "half-configured", "unpacked", "triggers-awaited",
                                              "triggers-pending"};

using util::trim;
using util::words;

/// One package of a dpkg status file.
struct Package {
  std::string name, arch, want, flag, state;
};

std::vector<Package> packages_of(const layer::RecordSet& records) {
  std::vector<Package> out;
  for (const auto& rec : records) {
    Package p;
    p.name = layer::stanza_field(rec.text, "Package");
    p.arch = layer::stanza_field(rec.text, "Architecture");
    auto st = words(layer::stanza_field(rec.text, "Status"));
    if (st.size() == 3) {
      p.want = st[0];
      p.flag = st[1];
      p.state = st[2];
    }
    out.push_back(std::move(p));
  }
  return out;
}

layer::RecordSet status_records(const std::string& text) {
  return layer::parse_records(layer::RecordFormat::dpkg_status, text, "/var/lib/dpkg/status");
}

/// A layer's dpkg database: carried as records, not as file content (layer/image.hpp).
layer::RecordSet layer_status(const nlohmann::json& manifest, const std::string& ref) {
  const char* path = "/var/lib/dpkg/status";
  if (!manifest.contains("records") || !manifest["records"].contains(path)) return {};
  return layer::delta_from_json(layer::RecordFormat::dpkg_status, manifest["records"][path], ref + " " + path).upsert;
}

/// One apt source: where it is described, its URI, suite and components.
struct Source {
  std::string where, uri, suite;
  std::vector<std::string> components;
};

void one_line_sources(const std::string& path, const std::string& text, std::vector<Source>& out) {
  std::istringstream in(text);
  size_t n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    if (auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    auto w = words(line);
    if (w.empty() || (w[0] != "deb" && w[0] != "deb-src")) continue;
    size_t i = 1;
    if (i < w.size() && w[i].front() == '[')  // options, perhaps over several words
      while (i < w.size() && w[i++].back() != ']') {
      }
    if (i + 1 >= w.size()) continue;
    Source s{path + ":" + std::to_string(n), w[i], w[i + 1], {w.begin() + static_cast<long>(i) + 2, w.end()}};
    out.push_back(std::move(s));
  }
}

void deb822_sources(const std::string& path, const std::string& text, std::vector<Source>& out) {
  std::istringstream in(text + "\n\n");
  std::map<std::string, std::string> fields;
  std::string last;
  size_t n = 0, start = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    if (!line.empty() && line[0] == '#') continue;
    if (trim(line).empty()) {
      if (!fields.empty() && fields["enabled"] != "no")
        for (const auto& uri : words(fields["uris"]))
          for (const auto& suite : words(fields["suites"]))
            out.push_back({path + ":" + std::to_string(start), uri, suite, words(fields["components"])});
      fields.clear();
      continue;
    }
    if (fields.empty()) start = n;
    if ((line[0] == ' ' || line[0] == '\t') && !last.empty()) {
      fields[last] += " " + trim(line);
      continue;
    }
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    last = line.substr(0, colon);
    std::transform(last.begin(), last.end(), last.begin(), [](unsigned char c) { return std::tolower(c); });
    fields[last] = trim(std::string_view(line).substr(colon + 1));
  }
}

std::vector<Source> apt_sources(TreeReader& tree) {
  std::vector<Source> out;
  if (auto t = tree.read("/etc/apt/sources.list", k_max_read)) one_line_sources("/etc/apt/sources.list", *t, out);
  for (const auto& name : tree.list("/etc/apt/sources.list.d")) {
    std::string path = "/etc/apt/sources.list.d/" + name;
    bool list = name.size() > 5 && name.ends_with(".list"), d822 = name.size() > 8 && name.ends_with(".sources");
    if (!list && !d822) continue;  // apt ignores other names too
    if (auto t = tree.read(path, k_max_read)) (list ? one_line_sources : deb822_sources)(path, *t, out);
  }
  return out;
}

void check_release(TreeReader& tree, Report& r) {
  auto v = tree.read("/etc/debian_version", 4096);
  std::string version = v ? trim(*v) : "";
  if (!version.starts_with("12."))
    r.findings.push_back({"os.release", Severity::inhibitor,
                          v ? "the device runs Debian " + version + ", not 12 (bookworm)" : "the device has no /etc/debian_version: not a Debian system",
                          {"/etc/debian_version"}, {}});
}

void check_dpkg(const std::vector<Package>& pkgs, Report& r) {
  std::vector<std::string> stuck, held;
  std::string detail;
  for (const auto& p : pkgs) {
    if (k_audit_states.count(p.state) || p.flag == "reinstreq") {
      stuck.push_back(p.name);
      detail += (detail.empty() ? "" : ", ") + p.name + " (" + (p.flag == "reinstreq" ? "reinstreq " : "") + p.state + ")";
    }
    if (p.want == "hold") held.push_back(p.name);
  }
  if (!stuck.empty())
    r.findings.push_back({"dpkg.audit", Severity::inhibitor,
                          "dpkg --audit is not clean: " + detail + "; finish or remove them (dpkg --configure -a, apt-get -f install)",
                          {"/var/lib/dpkg/status"}, stuck});
  if (!held.empty())
    r.findings.push_back({"packages.held", Severity::inhibitor,
                          std::to_string(held.size()) + " packages on hold would stay at their bookworm versions; release them (apt-mark unhold)",
                          {"/var/lib/dpkg/status"}, held});
}

void check_sources(TreeReader& tree, Report& r) {
  std::vector<std::string> where;
  std::string detail;
  for (const auto& s : apt_sources(tree)) {
    bool mapped = k_mapped_suites.count(s.suite) != 0 && !s.components.empty();
    for (const auto& c : s.components) mapped = mapped && k_debian_components.count(c) != 0;
    if (mapped) continue;
    if (std::find(where.begin(), where.end(), s.where) == where.end()) where.push_back(s.where);
    std::string comps;
    for (const auto& c : s.components) comps += " " + c;
    detail += (detail.empty() ? "" : "; ") + s.where + ": " + s.uri + " " + s.suite + comps;
  }
  if (!where.empty())
    r.findings.push_back({"apt.unmappable-source", Severity::inhibitor,
                          "apt sources the migration cannot point at trixie (only Debian's bookworm suites map): " + detail,
                          where, {}});
}

void check_arch(TreeReader& tree, const std::vector<Package>& pkgs, Report& r) {
  std::string native;
  for (const auto& p : pkgs)
    if (p.name == "dpkg") native = p.arch;
  std::vector<std::string> dropped;
  if (k_dropped_native.count(native)) dropped.push_back(native);
  if (auto t = tree.read("/var/lib/dpkg/arch", 65536))
    for (const auto& a : words(*t))
      if (a != native && k_dropped_foreign.count(a) && std::find(dropped.begin(), dropped.end(), a) == dropped.end())
        dropped.push_back(a);
  if (dropped.empty()) return;
  std::string list;
  for (const auto& a : dropped) list += (list.empty() ? "" : ", ") + a + (a == native ? " (native)" : " (foreign)");
  r.findings.push_back({"arch.dropped", Severity::inhibitor,
                        "architectures Debian 13 no longer supports here: " + list +
                            " (trixie keeps i386 only as a foreign architecture on amd64 and has no mipsel or mips64el)",
                        {"/var/lib/dpkg/arch"}, dropped});
}

void check_ssh(TreeReader& tree, Report& r) {
  std::vector<std::string> keys;
  for (const auto& name : tree.list("/etc/ssh"))
    if (name.starts_with("ssh_host_dsa_key")) keys.push_back("/etc/ssh/" + name);
  if (!keys.empty())
    r.findings.push_back({"ssh.dsa-host-key", Severity::inhibitor,
                          "DSA SSH host keys: OpenSSH in trixie (10.0) has removed DSA; the keys are not carried and clients "
                          "that pinned them will see a changed host key",
                          keys, {}});
}

void check_space(const PreflightInput& in, Report& r) {
  if (!in.base || !in.free_bytes) {
    r.findings.push_back({"disk.free-unknown", Severity::warning,
                          !in.base ? "free space not checked: no new base given (--base NAME@VER)"
                                   : "free space not checked: the device's inventory does not report it (an older endpoint)",
                          {}, {}});
    return;
  }
  uint64_t need = in.base->size_bytes + in.base->size_bytes / 10;
  if (*in.free_bytes < need)
    r.findings.push_back({"disk.free", Severity::inhibitor,
                          "free space " + std::to_string(*in.free_bytes) + " bytes is below the new base's size plus 10% (" +
                              std::to_string(need) + " bytes, base " + in.base->ref + ")",
                          {"/"}, {}});
}

void check_packages(TreeReader& tree, const layer::RecordSet& status, const PreflightInput& in, Report& r) {
  auto marked = auto_installed(tree.read(k_extended_states, k_max_read).value_or(""));
  std::vector<std::string> own, replaced;  // the user's, the old release's: both not in the new base
  auto chosen = chosen_packages(status, marked, in.old_base);
  for (const auto& p : packages_of(status)) {
    if (p.state != "installed" || (in.base && in.base->packages.count(p.name))) continue;
    auto& list = chosen.count(p.name) ? own : replaced;
    if (std::find(list.begin(), list.end(), p.name) == list.end()) list.push_back(p.name);
  }
  if (in.base && !replaced.empty())
    r.findings.push_back({"packages.replaced", Severity::info,
                          std::to_string(replaced.size()) + " packages of the old release (its base, apt's automatic ones, "
                                                            "required and important ones, dependencies) are not in " +
                              in.base->ref + ": the new base's packages and their dependencies take their place",
                          {}, replaced});
  if (own.empty()) return;
  if (!in.base || !in.base->available) {
    r.findings.push_back({"packages.unknown", Severity::warning,
                          std::to_string(own.size()) + " packages the user installed are not in the new base; " +
                              (!in.base ? "no --base given" : "the base " + in.base->ref + " has no apt package lists") +
                              ": whether trixie has them is unknown",
                          {}, own});
    return;
  }
  std::vector<std::string> missing;
  for (const auto& name : own)
    if (!in.base->available->count(name)) missing.push_back(name);
  if (!missing.empty())
    r.findings.push_back({"packages.no-candidate", Severity::inhibitor,
                          std::to_string(missing.size()) + " packages the user installed have no candidate in " + in.base->ref +
                              "'s package lists and could not be installed again",
                          {}, missing});
}

}  // namespace

std::optional<std::string> SnapshotReader::read(const std::string& path, uint64_t max_bytes) {
  tree::Entry e;
  try {
    e = browse::resolve(m_source, m_root, path);
  } catch (const Error& err) {
    if (err.kind() == ErrorKind::not_found) return std::nullopt;
    throw;
  }
  if (e.kind != tree::Kind::file) return std::nullopt;
  if (e.size > max_bytes)
    throw Error(ErrorKind::usage, path + ": " + std::to_string(e.size) + " bytes, more than the " + std::to_string(max_bytes) +
                                      " the check reads");
  return layer::read_content(m_source, e, path);
}

std::vector<std::string> SnapshotReader::list(const std::string& path) {
  std::vector<std::string> out;
  try {
    if (browse::resolve(m_source, m_root, path).kind != tree::Kind::dir) return out;
    browse::list(m_source, m_root, path, false, [&](const browse::Item& item) { out.push_back(item.entry.name); });
  } catch (const Error& err) {
    if (err.kind() != ErrorKind::not_found) throw;
  }
  return out;
}

std::vector<uint8_t> RepositorySource::records(std::span<const util::Digest> ids) {
  std::vector<uint8_t> out;
  m_repo.read_records(ids, out);
  return out;
}

std::string_view severity_name(Severity s) {
  switch (s) {
    case Severity::info: return "info";
    case Severity::warning: return "warning";
    case Severity::inhibitor: return "inhibitor";
  }
  return "?";
}

void to_json(json& j, const Finding& f) {
  j = {{"code", f.code}, {"severity", severity_name(f.severity)}, {"message", f.message}, {"paths", f.paths},
       {"packages", f.packages}};
}

bool Report::inhibited() const {
  return std::any_of(findings.begin(), findings.end(), [](const Finding& f) { return f.severity == Severity::inhibitor; });
}

void to_json(json& j, const Report& r) {
  json counts = {{"inhibitor", 0}, {"warning", 0}, {"info", 0}};
  for (const auto& f : r.findings) counts[std::string(severity_name(f.severity))] = counts[std::string(severity_name(f.severity))].get<int>() + 1;
  j = {{"inhibited", r.inhibited()}, {"findings", r.findings}, {"counts", counts}};
}

NewBase describe_base(TreeReader& tree, const std::string& ref, uint64_t size_bytes, const std::string& dpkg_status) {
  NewBase b;
  b.ref = ref;
  b.size_bytes = size_bytes;
  for (const auto& p : packages_of(status_records(dpkg_status)))
    if (p.state == "installed") b.packages.insert(p.name);
  for (const auto& name : tree.list("/var/lib/apt/lists")) {
    if (!name.ends_with("_Packages")) continue;
    auto text = tree.read("/var/lib/apt/lists/" + name, k_max_read);
    if (!text) continue;
    if (!b.available) b.available.emplace();
    std::istringstream in(*text);
    for (std::string line; std::getline(in, line);)
      if (line.starts_with("Package:")) b.available->insert(trim(std::string_view(line).substr(8)));
  }
  if (b.available) b.available->insert(b.packages.begin(), b.packages.end());
  return b;
}

NewBase base_from_layer(materialize::ObjectSource& source, const util::Digest& tree, const std::string& ref,
                        const nlohmann::json& manifest) {
  tree::Entry root;
  root.kind = tree::Kind::dir;
  root.subtree = tree;
  SnapshotReader reader(source, root);
  std::string status = layer::format_records(layer::RecordFormat::dpkg_status, layer_status(manifest, ref));
  return describe_base(reader, ref, materialize::bytes_under(source, root, {"/"}), status);
}

std::set<std::string> layer_packages(const nlohmann::json& manifest, const std::string& ref) {
  std::set<std::string> out;
  for (const auto& p : packages_of(layer_status(manifest, ref)))
    if (p.state == "installed") out.insert(p.name);
  return out;
}

Report preflight(TreeReader& device, const PreflightInput& input) {
  Report r;
  check_release(device, r);
  auto text = device.read("/var/lib/dpkg/status", k_max_read);
  layer::RecordSet status = text ? status_records(*text) : layer::RecordSet{};
  std::vector<Package> pkgs = packages_of(status);
  check_dpkg(pkgs, r);
  check_sources(device, r);
  check_arch(device, pkgs, r);
  check_ssh(device, r);
  check_space(input, r);
  check_packages(device, status, input, r);
  return r;
}

}  // namespace mirage::migrate
