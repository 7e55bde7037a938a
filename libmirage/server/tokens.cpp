// server.info and the token methods: bearer tokens with a role, stored as SHA-256.
#include "libmirage/server/methods.hpp"
#include "libmirage/util/clock.hpp"
#include "libmirage/util/hex.hpp"

namespace mirage::server {

using nlohmann::json;

namespace {

constexpr double k_max_expiry = 100.0 * 365 * 86400;

/// When a token made now expires (ns since the epoch); 0: never.
int64_t expiry(double seconds) { return seconds > 0 ? util::now_ns() + static_cast<int64_t>(seconds * 1e9) : 0; }

}  // namespace

std::string issue_token(catalog::Catalog& cat, const std::string& name, Role role, int64_t expires_at) {
  std::string token = "mrg_" + util::random_hex(24);
  cat.add_token(util::sha256_hex(token), name, server::name(role), expires_at);
  return token;
}

void to_json(json& j, const ServerInfo& r) {
  j = {{"version", MIRAGE_VERSION}, {"protocol", proto::k_protocol_version}, {"role", r.role}};
  if (r.data) j["data"] = *r.data;
}

ServerInfo server_info(Context& c, const NoParams&) {
  // Where the data lives is for admins only (a device or a stranger has no use for it).
  ServerInfo r{c.caller.role, std::nullopt};
  if (c.caller.role == Role::admin) r.data = c.repo.path().string();
  return r;
}

void to_json(json& j, const TokenReply& r) {
  j = {{"name", r.name},
       {"role", r.role},
       {"token", r.token},
       {"expires", r.expires ? json(util::rfc3339(r.expires)) : json(nullptr)}};
}

TokenCreate TokenCreate::parse(const Params& p) {
  TokenCreate t;
  t.name = p.text("name");
  if (!valid_name(t.name))
    throw Error(ErrorKind::usage, "token name '" + printable(t.name, 100) +
                                      "': 1-100 letters, digits, '-', '_' or '.'");
  std::string role = p.text("role");
  // A token is given one of the four roles (device and anonymous are callers, not roles).
  Role r = Role::anonymous;
  try {
    r = server::parse<Role>(role);
  } catch (const Error&) {
  }
  if (!token_role(r))
    throw Error(ErrorKind::usage, "role '" + printable(role, 100) + "': expected admin, image-manager, protection-manager or helpdesk");
  t.role = r;
  if (t.name.size() > 100) throw Error(ErrorKind::usage, "token name: at most 100 characters");
  t.expires_seconds = p.number("expires_seconds", 0, 0, k_max_expiry);
  return t;
}

TokenRotate TokenRotate::parse(const Params& p) { return {p.text("name"), p.number("expires_seconds", 0, 0, k_max_expiry)}; }

TokenReply token_create(Context& c, const TokenCreate& p) {
  auto& cat = c.cat();
  catalog::Transaction tx(cat);
  if (cat.token_name_taken(p.name)) throw Error(ErrorKind::precondition, "a live token is already named " + p.name);
  int64_t expires = expiry(p.expires_seconds);
  std::string token = issue_token(cat, p.name, p.role, expires);
  cat.add_event("token.created", "", {{"name", p.name}, {"role", p.role}, {"by", c.by()}});
  tx.commit();
  return {p.name, p.role, token, expires};
}

TokenReply token_rotate(Context& c, const TokenRotate& p) {
  // A new secret for the same name and role; the old one stops working at once.
  auto& cat = c.cat();
  catalog::Transaction tx(cat);
  auto stored = cat.live_token_role(p.name);
  if (!stored) throw Error(ErrorKind::not_found, "no live token named " + p.name);
  Role role = parse<Role>(*stored);
  int64_t expires = expiry(p.expires_seconds);
  cat.revoke_token(p.name);
  std::string token = issue_token(cat, p.name, role, expires);
  cat.add_event("token.rotated", "", {{"name", p.name}, {"role", role}, {"by", c.by()}});
  tx.commit();
  return {p.name, role, token, expires};
}

void to_json(json& j, const Tokens& r) { j = {{"tokens", r.tokens}}; }

Tokens token_list(Context& c, const NoParams&) { return {c.cat().tokens()}; }

void to_json(json& j, const TokenRevoked& r) { j = {{"name", r.name}, {"revoked", true}}; }

TokenRevoked token_revoke(Context& c, const TokenName& p) {
  auto& cat = c.cat();
  catalog::Transaction tx(cat);
  if (cat.live_token_role(p.name) == name(Role::admin) && cat.live_admin_tokens() <= 1)
    throw Error(ErrorKind::precondition, "token " + p.name + " is the last live admin token; create another admin "
                                         "token first (or rotate this one)");
  if (cat.revoke_token(p.name) == 0) throw Error(ErrorKind::not_found, "no live token named " + p.name);
  cat.add_event("token.revoked", "", {{"name", p.name}, {"by", c.by()}});
  tx.commit();
  return {p.name};
}

}  // namespace mirage::server
