#pragma once
// Reverting this endpoint to one of its snapshots (an order of type revert, queued by
// order.revert; called by centralize after the snapshot that protects the state before
// it): the plan of layer/revert.hpp, carried out by the journaled layer apply.
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
/// before carrying the still pending order out again.
nlohmann::json revert_order(Client& client, const nlohmann::json& next, const ApplyOrderOptions& options,
                            const policy::UploadPolicy& policy);

/// Tells the server the order failed (when it can be reached: else it stays pending and
/// is tried again on the next sync).
void report_failed(Client& client, const std::string& order_id, const std::string& device, const Error& e);

/// What a revert of `device` to `snapshot` (client::resolve_snapshot's JSON) in `mode`
/// would change on the device as its latest snapshot has it: plan_json with every path,
/// plus "device_id", "snapshot_id", "against_snapshot", "mode". Changes nothing.
nlohmann::json revert_dry_run(Client& client, const nlohmann::json& snapshot, const std::string& mode);

}  // namespace mirage::endpoint
