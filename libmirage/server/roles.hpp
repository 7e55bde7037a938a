#pragma once
// Which roles may call which method: one table, checked for every request before its
// handler runs (man mirage-serverd shows it). The local user over stdio is admin.
//   admin               everything
//   image-manager       layers, captures, reference devices, assignments
//   protection-manager  upload policies, accepting and rejecting devices
//   helpdesk            viewing devices, snapshots, layers and events; restores; enforce
// Every role may read (lists, status, chunk reads for restores). The endpoint's own
// methods (register, upload, commit, orders) need admin until device credentials exist.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "libmirage/server/service.hpp"

namespace mirage::server {

bool valid_role(const std::string& role);
/// Throws Error(permission) naming the method and the roles that may call it.
void check_role(const std::string& method, const nlohmann::json& params, const Caller& caller);
/// True for the methods that change what admins manage (the audit journal records
/// each call: who, with which role, the method and its parameters).
bool audited(const std::string& method);
/// The roles allowed a method with these params (for the message and the docs).
std::vector<std::string> allowed_roles(const std::string& method, const nlohmann::json& params);

/// What a method must not run beside: `parallel` methods read, or write only what
/// is theirs (an upload's own pack), and take no lock; `device` methods change one
/// device's CVD and are serialized with that device's other `device` requests;
/// `fleet` methods change fleet-wide state and are serialized with each other.
enum class Concurrency { parallel, device, fleet };
Concurrency concurrency(const std::string& method);

}  // namespace mirage::server
