// server's method registry, its enums and params: one row per method decides who may
// call it, whether it is audited, its lock class and its body limit; params parse into
// structs with errors naming the field.
#include <doctest/doctest.h>

#include "cmd/common/tool.hpp"

#include <set>

#include "libmirage/server/kinds.hpp"
#include "libmirage/server/methods.hpp"
#include "libmirage/server/registry.hpp"
#include "tests/unit/check_error.hpp"

using namespace mirage;
using server::Role;

namespace {

/// The message of the usage error `f` throws ("" when it throws none or another kind).
template <class F>
std::string usage_message(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.kind() == ErrorKind::usage ? e.what() : "";
  }
  return "";
}

const server::Method& row(const char* name) {
  const server::Method* m = server::find_method(name);
  REQUIRE(m != nullptr);
  return *m;
}

/// The permission error's message, "" when `caller` may call `method` with `params`.
std::string refusal(const char* method, const nlohmann::json& params, Role role, const std::string& name = "t") {
  server::Caller caller{role, name};
  try {
    server::check_access(row(method), params, caller);
  } catch (const Error& e) {
    return e.kind() == ErrorKind::permission ? e.what() : "not permission: " + std::string(e.what());
  }
  return "";
}

}  // namespace

TEST_SUITE_BEGIN("server::registry");

TEST_CASE("enums read and write their wire names and refuse any other") {
  CHECK(nlohmann::json(Role::image_manager) == "image-manager");
  CHECK(nlohmann::json("protection-manager").get<Role>() == Role::protection_manager);
  CHECK(nlohmann::json(server::OrderKind::provision) == "provision");
  CHECK(nlohmann::json("superseded").get<server::OrderState>() == server::OrderState::superseded);
  for (auto s : {server::OrderState::pending, server::OrderState::done, server::OrderState::failed, server::OrderState::superseded})
    CHECK(server::parse<server::OrderState>(server::name(s)) == s);
  auto message = usage_message([] { (void)nlohmann::json("Admin").get<Role>(); });
  CHECK(message == "role 'Admin': expected admin, image-manager, protection-manager, helpdesk, device or anonymous");
  CHECK(usage_message([] { (void)nlohmann::json("later").get<server::OrderKind>(); }) ==
        "order type 'later': expected assign, enforce, provision, snapshot, revert or migrate");
  CHECK(usage_message([] { (void)nlohmann::json(3).get<server::OrderState>(); }).find("order state") == 0);
  CHECK(nlohmann::json("user-data").get<server::RevertMode>() == server::RevertMode::user_data);
  CHECK(usage_message([] { (void)nlohmann::json("all").get<server::RevertMode>(); }) ==
        "revert mode 'all': expected system, full or user-data");
}

TEST_CASE("every method has one row, with a body limit and at least one access case") {
  std::set<std::string_view> names;
  for (const auto& m : server::methods()) {
    CHECK(names.insert(m.name).second);
    CHECK(!m.access.empty());
    CHECK(!m.access.back().applies);  // the last case takes every call
    CHECK(bool(m.run));
  }
  CHECK(names.size() == 55);  // a new method adds its row here, in roles-matrix.sh and in the man page
  CHECK(server::find_method("no.such") == nullptr);
}

TEST_CASE("the rows decide who may call") {
  CHECK(refusal("server.info", {}, Role::helpdesk) == "");
  CHECK(refusal("token.create", {}, Role::image_manager) ==
        "token.create needs one of the roles admin (this token is image-manager)");
  SUBCASE("roles that depend on a parameter") {
    CHECK(refusal("device.accept", {{"device_id", "d"}}, Role::image_manager) != "");
    CHECK(refusal("device.accept", {{"device_id", "d"}, {"reference", true}}, Role::image_manager) == "");
    CHECK(refusal("order.create", {{"type", "enforce"}}, Role::helpdesk) == "");
    CHECK(refusal("order.create", {{"type", "assign"}}, Role::helpdesk) != "");
    CHECK(refusal("order.create", {}, Role::helpdesk) != "");
    CHECK(refusal("chunks.put", {}, Role::image_manager) == "");
    CHECK(refusal("order.revert", {{"device", "d"}}, Role::helpdesk) == "");
    CHECK(refusal("order.revert", {{"device", "d"}}, Role::protection_manager) == "");
    CHECK(refusal("order.revert", {{"device", "d"}}, Role::image_manager) != "");
    CHECK(refusal("chunks.put", {{"device_id", "d"}}, Role::image_manager) != "");
    CHECK(refusal("migrate.check", {{"device_ids", {"d"}}}, Role::admin) == "");
    CHECK(refusal("migrate.check", {{"device_ids", {"d"}}}, Role::image_manager) ==
          "migrate.check needs one of the roles admin (this token is image-manager)");
  }
  SUBCASE("a device's credential: its own CVD, the rows marked for devices") {
    CHECK(refusal("snapshot.commit", {{"device_id", "d"}}, Role::device, "d") == "");
    CHECK(refusal("snapshot.commit", {{"device_id", "e"}}, Role::device, "d") == "device d may act on its own CVD only");
    CHECK(refusal("device.list", {}, Role::device, "d") == "device.list is not for device credentials");
    CHECK(refusal("order.revert", {{"device", "d"}}, Role::device, "d") == "order.revert is not for device credentials");
    CHECK(refusal("chunks.put", {}, Role::device, "d") == "a device uploads to its own CVD only");
    CHECK(refusal("chunks.put", {{"device_id", "d"}}, Role::device, "d") == "");
  }
  SUBCASE("without a token: the anonymous rows only") {
    CHECK(refusal("device.register", {}, Role::anonymous) == "");
    CHECK(refusal("server.info", {}, Role::anonymous) == "");
    CHECK(refusal("device.list", {}, Role::anonymous) != "");
  }
}

TEST_CASE("audit, lock class and body limit come from the rows") {
  CHECK(server::audited(row("token.create"), {}));
  CHECK(!server::audited(row("snapshot.commit"), {}));
  CHECK(server::audited(row("order.create"), {{"dry_run", false}}));
  CHECK(!server::audited(row("order.create"), {{"dry_run", true}}));
  CHECK(row("snapshot.commit").concurrency == server::Concurrency::device);
  CHECK(row("token.create").concurrency == server::Concurrency::fleet);
  CHECK(row("chunks.put").concurrency == server::Concurrency::parallel);
  server::Limits limits;
  limits.set("upload-body=100K", tool::parse_size);
  limits.set("read-body=200K", tool::parse_size);
  limits.set("layer-body=300K", tool::parse_size);
  limits.set("request-body=50K", tool::parse_size);
  CHECK(limits.body_limit("chunks.put") == 100u << 10);
  CHECK(limits.body_limit("chunks.delta") == 200u << 10);
  CHECK(limits.body_limit("layer.commit") == 300u << 10);
  CHECK(limits.body_limit("token.create") == 50u << 10);
  CHECK(limits.body_limit("no.such") == 50u << 10);
}

TEST_CASE("params parse into structs, naming the field that is wrong") {
  server::Limits limits;
  limits.set("inventory=1K", tool::parse_size);
  auto parse = [&](auto tag, nlohmann::json j) {
    using P = decltype(tag);
    return P::parse(server::Params(j, limits));
  };
  auto order = parse(server::OrderCreate{}, {{"device_ids", {"a", "b"}}, {"type", "provision"}, {"base", "deb@2"}});
  CHECK(order.type == server::OrderKind::provision);
  CHECK(order.remove_user_apps);  // a provision always removes user apps
  CHECK(order.targets.device_ids == std::vector<std::string>{"a", "b"});
  CHECK(usage_message([&] { parse(server::OrderCreate{}, {{"type", "snapshot"}}); }) ==
        "order type 'snapshot': expected assign, enforce or provision");
  CHECK(usage_message([&] { parse(server::OrderCreate{}, {{"base", 5}}); }) == "parameter 'base' must be a string");
  CHECK(usage_message([&] { parse(server::OrderCreate{}, {{"dry_run", "yes"}, {"base", "b"}}); }) ==
        "parameter 'dry_run' must be true or false");
  CHECK(usage_message([&] { parse(server::DeviceRegister{}, {{"device_id", "d"}, {"hostname", 7}}); }) ==
        "parameter 'hostname' must be a string");
  CHECK(usage_message([&] {
          parse(server::DeviceRegister{}, {{"device_id", "d"}, {"inventory", {{"x", std::string(2000, 'x')}}}});
        }).find("inventory: a JSON object of at most 1024 bytes (limit inventory)") == 0);
  CHECK(usage_message([&] { parse(server::TokenCreate{}, {{"name", "n"}, {"role", "device"}}); }) ==
        "role 'device': expected admin, image-manager, protection-manager or helpdesk");
  CHECK(usage_message([&] { parse(server::OrderReport{}, {{"order_id", "o"}, {"state", "pending"}, {"device_id", "d"}}); }) ==
        "state 'pending': expected done or failed");
  CHECK(usage_message([&] { parse(server::EventsList{}, {{"after_id", 1.5}}); }).find("parameter 'after_id'") == 0);
  CHECK(usage_message([&] { parse(server::VolumeSet{}, {{"volume_id", 1}}); }) == "give read_only");
}

TEST_SUITE_END();
