#pragma once
// Test crash points. The library never exits: at a point a crash test names, it calls
// a hook the executable installs (from its environment), and only the tool dies there.
#include <cstddef>
#include <functional>
#include <string_view>

namespace mirage::util {

/// Called at a named point of a long operation with the point's step number (0 for a
/// point that happens once). Points: "before_commit" (a sync's scan and upload done, its
/// snapshot not yet committed), "apply_stage" (before staging entry N of a layer apply),
/// "apply_step" (before commit step N), "migrate_link" (before an OS migration links
/// entry N of the old system under /old-root), "old_root_remove" (before entry N of an
/// /old-root/<id> removal goes), "old_root_reported" (a removal reported to the server,
/// not yet forgotten by the endpoint), "stream_fill" (a streamed revert's placeholders
/// in place, before their fill). Empty means no crash points; a hook that
/// returns lets the operation go on.
using CrashHook = std::function<void(std::string_view point, std::size_t index)>;

}  // namespace mirage::util
