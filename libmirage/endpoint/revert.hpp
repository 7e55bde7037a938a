#pragma once
// Reverting this endpoint to one of its snapshots (an order of type revert, queued by
// order.revert; called by centralize after the snapshot that protects the state before
// it): the plan of layer/revert.hpp, carried out by the journaled layer apply.
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "libmirage/endpoint/layers.hpp"
#include "libmirage/policy/upload_policy.hpp"
#include "libmirage/util/error.hpp"

namespace mirage::endpoint {

/// Carries out a revert order (`next`: order.next's reply) against the protecting
/// snapshot `options.snapshot`, within the device's upload policy `policy`, and
/// reports it done to the server (which then gives the device the layers it had at the
/// snapshot). Returns the report: {"snapshot_id", "mode", "plan", "apply", "wire_bytes",
/// "seconds", "protected_by", "order_id"}. A failure is reported and rethrown; a crash
/// leaves the apply journal, which the next sync's recovery finishes or rolls back
/// before carrying the still pending order out again. `carried_out`, when given, is
/// called once the revert is in place, before it is reported (a rollback of an OS
/// migration marks its /old-root for removal there: a crash after it, before the
/// report, still has the old root removed by the next sync).
nlohmann::json revert_order(Client& client, const nlohmann::json& next, const ApplyOrderOptions& options,
                            const policy::UploadPolicy& policy, const std::function<void()>& carried_out = nullptr);

/// Tells the server the order failed (when it can be reached: else it stays pending and
/// is tried again on the next sync).
void report_failed(Client& client, const std::string& order_id, const std::string& device, const Error& e);

/// A streamed revert (the order's spec has "stream": true, and `options` has more
/// connections): the files outside the minimal set (policy restore_first) that need
/// bytes this device does not hold are staged as placeholders (materialize/stream.hpp)
/// and renamed into place with the rest; STATE_DIR/stream.json names them (written
/// before the apply), and fill_streamed() fills them after the order is reported.
///
/// Fills the placeholders a streamed revert left, as STATE_DIR/stream.json names them:
/// the user area's newest first, a program's read first (fanotify, where the kernel has
/// it); reports restore.usable and restore.done to the server; removes the journal once
/// every one is filled. Nothing (and null) without a journal. A sync calls it after the
/// revert and at its start, before any scan, so a fill cut short by kill -9 goes on and
/// no snapshot is taken while placeholders it knows of are left. Returns {"fill": its
/// progress (stream.hpp), "on_demand", "on_demand_why_not", "seconds"}; a file it could not fill stays a
/// placeholder, the journal stays, and the first error is thrown.
nlohmann::json fill_streamed(Client& client, const ApplyOrderOptions& options, const policy::UploadPolicy& policy);

/// What a revert of `device` to `snapshot` (client::resolve_snapshot's JSON) in `mode`
/// would change on the device as its latest snapshot has it: plan_json with every path,
/// plus "device_id", "snapshot_id", "against_snapshot", "mode". Changes nothing.
nlohmann::json revert_dry_run(Client& client, const nlohmann::json& snapshot, const std::string& mode);

}  // namespace mirage::endpoint
