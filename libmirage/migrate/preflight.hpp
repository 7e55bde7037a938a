#pragma once
// The migration preflight (`mirage-migrate check`): what in a device's tree would make a
// Debian 12 -> 13 migration fail or lose something, read from its latest snapshot on the
// server (the CVD has the whole tree), so the endpoint need not be online.
//
// A plain function over a TreeReader: the server reads a snapshot through
// SnapshotReader (browse's resolve and list, layer's read_content), a test an in-memory
// tree. Each finding has a stable code, a severity, a message and the paths or packages
// it concerns; an inhibitor blocks the migration unless the admin forces it.
//
//   code                      severity   when
//   os.release                inhibitor  /etc/debian_version is missing or not 12.x
//   dpkg.audit                inhibitor  packages half-installed, half-configured, unpacked,
//                                        triggers-awaited or triggers-pending, or needing
//                                        reinstallation (reinstreq): dpkg --audit is not clean
//   packages.held             inhibitor  packages on hold (dpkg's want "hold")
//   apt.unmappable-source     inhibitor  an apt source the migration cannot point at trixie:
//                                        its suite is not bookworm, bookworm-updates,
//                                        bookworm-security or bookworm-backports, or a
//                                        component is not main, contrib, non-free or
//                                        non-free-firmware (a third-party repository)
//   arch.dropped              inhibitor  a foreign architecture trixie no longer has (mipsel,
//                                        mips64el), or a native one it does not support as a
//                                        host (i386, mipsel, mips64el)
//   ssh.dsa-host-key          inhibitor  /etc/ssh/ssh_host_dsa_key*: OpenSSH 10 in trixie has
//                                        no DSA; the key is not carried
//   disk.free                 inhibitor  the device's free space is below the new base's
//                                        size plus 10%
//   disk.free-unknown         warning    no free space in the inventory, or no --base
//   packages.no-candidate     inhibitor  packages the user installed (migrate/packages.hpp),
//                                        not in the new base, that its package lists lack
//   packages.unknown          warning    no --base, or a base without apt package lists:
//                                        whether those packages have a candidate is unknown
//   packages.replaced         info       packages of the old release (its base, apt's
//                                        automatic ones, required, important, dependencies)
//                                        the new base lacks: its own replace them
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "libmirage/materialize/restorer.hpp"
#include "libmirage/tree/tree.hpp"

namespace mirage::store {
class Repository;
}

namespace mirage::migrate {

/// Read access to a device's tree (root-relative absolute paths, symlinks not followed).
class TreeReader {
 public:
  virtual ~TreeReader() = default;
  /// The content of the regular file at `path`; nullopt when there is none there (or
  /// something else). Throws Error(usage) when it is over `max_bytes`.
  virtual std::optional<std::string> read(const std::string& path, uint64_t max_bytes) = 0;
  /// The names in the directory `path`, sorted; empty when there is no directory there.
  virtual std::vector<std::string> list(const std::string& path) = 0;
};

/// A TreeReader over a snapshot's (or a layer's) tree, read through `source`.
class SnapshotReader : public TreeReader {
 public:
  SnapshotReader(materialize::ObjectSource& source, tree::Entry root) : m_source(source), m_root(std::move(root)) {}
  std::optional<std::string> read(const std::string& path, uint64_t max_bytes) override;
  std::vector<std::string> list(const std::string& path) override;

 private:
  materialize::ObjectSource& m_source;
  tree::Entry m_root;
};

/// An ObjectSource over the server's own repository (what a server method reads a
/// snapshot with).
class RepositorySource : public materialize::ObjectSource {
 public:
  explicit RepositorySource(store::Repository& repo) : m_repo(repo) {}
  std::vector<uint8_t> records(std::span<const util::Digest> ids) override;

 private:
  store::Repository& m_repo;
};

enum class Severity { info, warning, inhibitor };
std::string_view severity_name(Severity s);

struct Finding {
  std::string code;
  Severity severity = Severity::warning;
  std::string message;
  std::vector<std::string> paths, packages;
};
void to_json(nlohmann::json& j, const Finding& f);

/// What the check knows of the new base layer.
struct NewBase {
  std::string ref;                ///< NAME@VER
  uint64_t size_bytes = 0;        ///< its files' bytes
  std::set<std::string> packages; ///< installed in it (its dpkg database)
  /// The packages its apt lists offer (/var/lib/apt/lists/*_Packages); nullopt when it
  /// has none.
  std::optional<std::set<std::string>> available;
};
/// Reads what NewBase needs from a base layer's tree and its dpkg status text.
NewBase describe_base(TreeReader& tree, const std::string& ref, uint64_t size_bytes, const std::string& dpkg_status);

/// What NewBase needs from a stored base layer: its tree (read through `source`), its
/// manifest's dpkg records, its files' bytes.
NewBase base_from_layer(materialize::ObjectSource& source, const util::Digest& tree, const std::string& ref,
                        const nlohmann::json& manifest);

/// The packages installed in a stored layer (its manifest's dpkg records).
std::set<std::string> layer_packages(const nlohmann::json& manifest, const std::string& ref);

/// The device's own snapshot check: its latest snapshot's tree through `source`.
struct PreflightInput {
  std::optional<NewBase> base;          ///< nullopt: no --base given
  std::optional<uint64_t> free_bytes;   ///< from the inventory ("root_free_bytes")
  std::set<std::string> old_base;       ///< the packages of the base the device was given (none: empty)
};

struct Report {
  std::vector<Finding> findings;
  bool inhibited() const;
};
/// {"inhibited", "findings": [...], "counts": {"inhibitor", "warning", "info"}}.
void to_json(nlohmann::json& j, const Report& r);

/// The preflight of the tree `device` reads.
Report preflight(TreeReader& device, const PreflightInput& input);

/// The largest file the check reads (a dpkg status, an apt list).
inline constexpr uint64_t k_max_read = 256ull << 20;

}  // namespace mirage::migrate
