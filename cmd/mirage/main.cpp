// mirage: the dispatcher. `mirage TOOL ARGS` runs mirage-TOOL ARGS (git-style);
// a few commands that are not tools of their own live here (check, policy).
#include <unistd.h>

#include <filesystem>
#include <iostream>

#include "libmirage/tool/tool.hpp"
#include "libmirage/util/fd.hpp"

using namespace mirage;
using nlohmann::json;

namespace {

const char* const k_tools[] = {"serverd", "centralize", "capture", "assign", "restore", "migrate", "reflect"};

/// Replaces this process with mirage-TOOL from beside this executable, else PATH.
int exec_tool(const std::string& tool, int argc, char** argv) {
  std::string name = "mirage-" + tool;
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  std::string path = name;
  if (!ec && std::filesystem::exists(self.parent_path() / name)) path = (self.parent_path() / name).string();
  std::vector<char*> args{name.data()};
  for (int i = 2; i < argc; ++i) args.push_back(argv[i]);
  args.push_back(nullptr);
  ::execvp(path.c_str(), args.data());
  std::cerr << "mirage: '" << tool << "' is not a mirage command (no " << name << " found)\n";
  return 2;
}

int check(const tool::Common& common, bool read_data) {
  auto client = tool::connect(common);
  json report = client.call("check", {{"read_data", read_data}});
  tool::print(common, report, [&](std::ostream& out) {
    out << "checked " << report["packs"] << " packs, " << report["chunks"] << " chunks, " << report["snapshots"]
        << " snapshots, " << report["trees"] << " trees";
    if (read_data) out << ", read " << tool::human_bytes(report["bytes_read"].get<uint64_t>());
    out << "\n";
    for (const auto& p : report["problems"])
      out << "  " << p["what"].get<std::string>() << " " << p["name"].get<std::string>() << ": "
          << p["message"].get<std::string>() << "\n";
    out << (report["ok"].get<bool>() ? "no errors\n" : "ERRORS FOUND\n");
  });
  return report["ok"].get<bool>() ? 0 : 6;
}

/// Events as JSON lines (one object per line, whatever --output says: they stream).
int events(const tool::Common& common, const std::string& device, const std::string& since, bool follow, double poll) {
  auto client = tool::connect(common);
  json params = json::object();
  if (!device.empty()) params["device_id"] = device;
  if (!since.empty()) params["since"] = since;
  int64_t last = 0;
  for (;;) {
    params["after_id"] = last;
    json r = client.call("events.list", params);
    for (const auto& e : r["events"]) {
      std::cout << e.dump() << "\n";
      last = e["event_id"].get<int64_t>();
    }
    std::cout.flush();
    if (!follow) return 0;
    if (r["events"].empty()) ::usleep(static_cast<useconds_t>(poll * 1e6));
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) {
    std::string first = argv[1];
    for (const char* t : k_tools)
      if (first == t) return exec_tool(first, argc, argv);
  }
  CLI::App app{"Mirage: layered image management and endpoint protection.\n"
               "Tools: centralize capture assign restore serverd\n"
               "(mirage TOOL ... runs mirage-TOOL ...)",
               "mirage"};
  app.set_version_flag("--version", MIRAGE_VERSION);
  tool::Common common;
  tool::add_common(app, common);
  app.fallthrough();
  bool read_data = false;
  std::string policy_name = "default", policy_file;
  auto* check_cmd = app.add_subcommand("check", "Verify the catalog, packs and snapshots");
  check_cmd->add_flag("--read-data", read_data, "Also read and verify every chunk");
  auto* policy = app.add_subcommand("policy", "Show or set upload policies");
  policy->require_subcommand(1);
  auto* policy_show = policy->add_subcommand("show", "Print an upload policy");
  policy_show->add_option("name", policy_name, "Policy name (default: default)");
  auto* policy_set = policy->add_subcommand("set", "Set an upload policy from a JSON file");
  policy_set->add_option("name", policy_name, "Policy name")->required();
  policy_set->add_option("--file", policy_file, "JSON policy document (- for stdin)")->required();
  std::string ev_device, ev_since;
  bool ev_follow = false;
  double ev_poll = 1.0;
  auto* events_cmd = app.add_subcommand("events", "Print events as JSON lines");
  events_cmd->add_option("--device", ev_device, "Only this device's events");
  events_cmd->add_option("--since", ev_since, "From this UTC date or time on (2026-11-25T10:00)");
  events_cmd->add_flag("--follow", ev_follow, "Keep printing new events as they come");
  events_cmd->add_option("--poll", ev_poll, "Seconds between polls with --follow (default 1)")->check(CLI::PositiveNumber);
  std::string tok_name, tok_role;
  auto* token = app.add_subcommand("token", "Create, list or revoke access tokens");
  token->require_subcommand(1);
  auto* token_create = token->add_subcommand("create", "Create a token; it is printed once");
  token_create->add_option("--name", tok_name, "Token name (who or what uses it)")->required();
  token_create->add_option("--role", tok_role, "admin, image-manager, protection-manager, helpdesk")->required();
  auto* token_list = token->add_subcommand("list", "List tokens (never their secrets)");
  auto* token_revoke = token->add_subcommand("revoke", "Revoke the live token with this name");
  token_revoke->add_option("name", tok_name, "Token name")->required();
  auto call_print = [&](const char* method, json params, const std::function<void(std::ostream&, const json&)>& text) {
    auto client = tool::connect(common);
    json r = client.call(method, std::move(params));
    tool::print(common, r, [&](std::ostream& out) { text(out, r); });
    return 0;
  };
  return tool::run(argc, argv, app, common,
                   {{check_cmd, [&] { return check(common, read_data); }},
                    {token_create,
                     [&] {
                       return call_print("token.create", {{"name", tok_name}, {"role", tok_role}},
                                         [](std::ostream& out, const json& r) {
                                           out << r["token"].get<std::string>() << "\n";
                                         });
                     }},
                    {token_list,
                     [&] {
                       return call_print("token.list", json::object(), [](std::ostream& out, const json& r) {
                         for (const auto& t : r["tokens"])
                           out << t["name"].get<std::string>() << "  " << t["role"].get<std::string>() << "  "
                               << t["created"].get<std::string>() << (t["revoked"].get<bool>() ? "  revoked" : "") << "\n";
                       });
                     }},
                    {token_revoke,
                     [&] {
                       return call_print("token.revoke", {{"name", tok_name}}, [](std::ostream& out, const json& r) {
                         out << "token " << r["name"].get<std::string>() << " revoked\n";
                       });
                     }},
                    {events_cmd, [&] { return events(common, ev_device, ev_since, ev_follow, ev_poll); }},
                    {policy_show,
                     [&] {
                       auto client = tool::connect(common);
                       tool::print(common, client.call("policy.get", {{"name", policy_name}}), nullptr);
                       return 0;
                     }},
                    {policy_set, [&] {
                       std::string text = policy_file == "-" ? std::string(std::istreambuf_iterator<char>(std::cin), {})
                                                             : util::read_file(policy_file);
                       json doc = json::parse(text, nullptr, false);
                       if (doc.is_discarded()) throw Error(ErrorKind::usage, "--file " + policy_file + ": not valid JSON");
                       auto client = tool::connect(common);
                       tool::print(common, client.call("policy.set", {{"name", policy_name}, {"policy", doc}}), nullptr);
                       return 0;
                     }}});
}
