#pragma once
// Reverting an endpoint to one of its snapshots (DESIGN.md §5, §8): the plan that makes
// E (the endpoint now, as the snapshot protecting it scanned it) into S (the snapshot)
// within a scope, carried out by the layer apply (apply.hpp: staged beside each target,
// renamed into place under a journal, so a crash leaves E or S, never a mix).
//   system     the machine area becomes S's; the user area stays as it is
//   full       everything becomes S's
//   user_data  the user area becomes S's; the machine area stays as it is
// Within the scope: a path S has and E lacks is created, one both have differently is
// replaced (or only its metadata set), one E has and S lacks is removed. Identity files
// (hostname, machine-id, SSH host keys) are machine area and come from S like the rest.
// Never touched: the unprotected area (an unprotected directory S has and E lacks is
// made, as a mount point; nothing in or of it changes otherwise).
// Ops: removes first (children before parents, so a directory S has as a file is empty
// before the file takes its place), then writes (parents first), then the directories
// whose contents change get S's metadata back. A hardlink group of S is written whole
// when any member is (the apply links members to the group's first), so the links come
// back as S has them.
#include <string_view>

#include "libmirage/layer/plan.hpp"
#include "libmirage/policy/upload_policy.hpp"

namespace mirage::layer {

enum class RevertScope { system, full, user_data };
/// "system", "full", "user-data".
std::string_view scope_name(RevertScope s);
/// The scope named `name`; Error(usage) for any other.
RevertScope scope_from_name(std::string_view name);

/// The plan that makes `e` into `s` within `scope`; `policy` gives the user area and
/// the unprotected area (the device's upload policy now).
Plan make_revert_plan(const Flat& s, const Flat& e, RevertScope scope, const policy::UploadPolicy& policy);

}  // namespace mirage::layer
