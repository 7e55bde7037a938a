#pragma once
// Carrying out an OS migration order on this endpoint (queued by migrate.start; called
// by centralize after the pinned snapshot that protects the state before it):
//  1. the old and new images are composed (layer trees fetched: only those not cached);
//  2. the old system area is linked under ROOT/old-root/<migration-id>/ (hard links on
//     the same filesystem: no data copied; a path the apply only changes the metadata
//     of is copied, so the old-root keeps the old owner and mode);
//  3. the migration plan (migrate/plan.hpp) is carried out by the journaled layer apply:
//     new files are staged and renamed over the old ones, whose inodes live on under
//     /old-root; chunks the endpoint has are not fetched;
//  4. the carried /etc/sudoers.d files are checked by visudo -c -f in a chroot (one it
//     rejects renamed PATH.mirage-local), before the user's packages are installed
//     again by apt when the new system has visudo, else after;
//  5. ROOT/etc/mirage/post-migration.d hooks run;
//  6. the order is reported done: the server gives the device the new layers.
// A state file in the state directory (migration.json) records the phase, so a crash
// at any point then a rerun of the still pending order finishes it: the linking is
// idempotent, the apply's own journal is finished or rolled back by the next sync's
// recovery (migration_recovered moves the phase on), and an applied migration is not
// planned again. Retention: /old-root/<id> is removed by expire_old_roots once its
// days (2-60, the order's keep_old_root_days) have passed, or by a rollback.
#include <chrono>
#include <filesystem>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "libmirage/endpoint/layers.hpp"
#include "libmirage/policy/upload_policy.hpp"
#include "libmirage/util/crash_point.hpp"

namespace mirage::endpoint {

/// Carries out a migrate order (`next`: order.next's reply) and reports it. Returns the
/// report: {"migration_id", "base", "from_layers", "plan", "removed_identity",
/// "dangling_enablement", "packages", "reinstalled", "sudoers": {checked, disabled:
/// [{path, renamed_to, visudo_exit, message}], after_packages, warning?}, "recapture", "old_root": {path, files, dirs, bytes, keep_days}, "apply",
/// "hooks", "id_map", "steps": [{step, bytes_moved, ...}], "wire_bytes", "seconds",
/// "protected_by"}. A failure is reported and rethrown.
nlohmann::json migrate_order(Client& client, const nlohmann::json& next, const ApplyOrderOptions& options);

/// After the apply journal's recovery (layer::recover's outcome): a migration whose
/// apply was finished is applied; one whose apply was rolled back is planned again.
void migration_recovered(const std::filesystem::path& state_dir, const std::string& recovered);

/// Reports an /old-root/<id> removal: {migration_id, reason (retention | rollback),
/// files, bytes, bytes_freed} (centralize: events.report, type old_root_removed). May
/// throw: the removal is then reported again by the next call.
using OldRootReport = std::function<void(const nlohmann::json&)>;

/// A rollback (a revert order naming `migration_id`) is about to be carried out: what
/// ROOT/old-root/<id> holds is measured and recorded in the retention state (once: a
/// rerun after a crash keeps the first figures), since the revert's commit removes it
/// (it was not in the snapshot the revert goes back to).
void old_root_before_rollback(const std::filesystem::path& root, const std::filesystem::path& state_dir,
                              const std::string& migration_id);

/// A rollback (a revert order naming `migration_id`) is in place: ROOT/old-root/<id> is
/// marked for removal in the retention state (with the figures measured before the
/// revert, else measured now); the next expire_old_roots removes what is left of it and
/// reports it, whatever the date.
void old_root_rolled_back(const std::filesystem::path& root, const std::filesystem::path& state_dir,
                          const std::string& migration_id);

/// Removes the /old-root/<id> directories whose retention has passed at `now` and those a
/// rollback marked. Each is measured and marked before anything goes, removed (crash
/// point "old_root_remove" N before its N-th entry), reported, then forgotten ("old_root_reported"
/// between the two): a kill at any point then a rerun finishes the removal and reports the
/// figures measured before it. One that fails (or whose report throws) is warned of and
/// kept for the next call. `keep` (a migration whose rollback is queued) is not removed
/// unless a rollback marked it. Returns those removed and reported.
nlohmann::json expire_old_roots(const std::filesystem::path& root, const std::filesystem::path& state_dir,
                                std::chrono::system_clock::time_point now, const OldRootReport& report,
                                const util::CrashHook& crash = nullptr, const std::string& keep = "");

/// What migrating `device` (its latest snapshot) with `spec` (a migrate order's, as
/// migrate.start's dry run composes it) would do: {"device_id", "against_snapshot",
/// "base", "paths": [PathDecision], "packages", "counts", "fetch_bytes", "local_bytes",
/// "removed_identity", "recapture"}. Changes nothing.
nlohmann::json migrate_dry_run(Client& client, const std::string& device, const nlohmann::json& spec,
                               const nlohmann::json& given);

}  // namespace mirage::endpoint
