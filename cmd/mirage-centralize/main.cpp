// mirage-centralize: register this endpoint and upload a snapshot of it; accept or
// reject pending devices.
#include <iostream>

#include "libmirage/tool/tool.hpp"

using namespace mirage;
using nlohmann::json;

namespace {

struct Options {
  std::string root = "/";
  std::string device_id;
  std::string state_dir;
  int compression = 3;
  unsigned threads = 2;
  std::string device;  // accept/reject argument
  bool reference = false;
  std::string policy;
  std::string state_filter;
};

int sync(const tool::Common& common_in, const Options& o) {
  client::CentralizeOptions co;
  co.root = o.root;
  if (o.device_id.empty()) {
    auto id = client::detect_device_id(co.root);
    if (!id) throw Error(ErrorKind::usage, "cannot tell this device's id (no DMI UUID or etc/machine-id); pass --device-id");
    co.device_id = *id;
  } else {
    co.device_id = o.device_id;
  }
  co.state_dir = o.state_dir.empty() ? std::filesystem::path(proto::default_data_dir()) / "endpoint" / co.device_id
                                     : std::filesystem::path(o.state_dir);
  // Over HTTP without a token, the device speaks for itself with its credential.
  tool::Common common = common_in;
  std::string server = common.server.empty() ? (getenv("MIRAGE_SERVER") ? getenv("MIRAGE_SERVER") : "") : common.server;
  if (common.token.empty() && !getenv("MIRAGE_TOKEN") && server.rfind("http", 0) == 0 &&
      std::filesystem::exists(co.state_dir / "credential"))
    common.token = "mdc_" + co.device_id + "." + client::device_secret(co.state_dir);
  co.compression_level = o.compression;
  co.threads = o.threads;
  tool::Progress bar;
  co.progress = [&](const scan::Progress& p) {
    bar.show(std::string(p.walking ? "scanning" : "uploading") + ": " + std::to_string(p.files) + " files, read " +
             tool::human_bytes(p.bytes_read) + " of " + tool::human_bytes(p.bytes_to_read) + ", sent " +
             tool::human_bytes(p.bytes_sent));
  };
  co.more_connections = tool::connection_factory(common);
  auto client = tool::connect(common);
  auto result = client::centralize(client, co);
  json doc = result;
  tool::print(common, doc, [&](std::ostream& out) {
    if (result.state != "accepted") {
      out << "device " << result.device_id << " is " << result.state
          << "; an admin must run: mirage-centralize accept " << result.device_id << "\n";
      return;
    }
    const auto& s = result.stats;
    out << "snapshot " << doc["snapshot"]["snapshot_id"].get<std::string>() << " of device " << result.device_id << "\n"
        << "  " << s.files << " files, " << s.dirs << " dirs, " << s.symlinks << " symlinks, "
        << tool::human_bytes(s.bytes) << "\n"
        << "  read " << s.files_read << " files (" << tool::human_bytes(s.bytes_read) << "), new "
        << tool::human_bytes(s.bytes_new) << ", sent " << tool::human_bytes(s.bytes_sent) << " in " << result.seconds
        << " s\n";
    if (doc.contains("order") && doc["order"].contains("apply")) {
      const auto& ord = doc["order"];
      const auto& a = ord["apply"];
      std::string layers;
      for (const auto& l : ord["layers"]) layers += (layers.empty() ? "" : ", ") + l.get<std::string>();
      out << "order " << ord["order_id"].get<std::string>() << " carried out: " << layers << "\n"
          << "  written " << a["written"] << ", metadata " << a["metadata"] << ", removed " << a["removed"]
          << ", merged " << a["merged"] << ", set aside " << a["saved_local"] << "; "
          << tool::human_bytes(a["bytes_local"].get<uint64_t>()) << " from this device, "
          << tool::human_bytes(ord["wire_bytes"].get<uint64_t>()) << " over the wire\n"
          << "  protected by snapshot " << doc["protected_by"]["snapshot_id"].get<std::string>() << "\n";
    }
  });
  return result.state == "accepted" ? 0 : 5;
}

void print_devices(const tool::Common& common, const json& devices) {
  tool::print(common, {{"devices", devices}}, [&](std::ostream& out) {
    if (devices.empty()) out << "no devices\n";
    for (const auto& d : devices)
      out << d["device_id"].get<std::string>() << "  " << d["state"].get<std::string>() << "  "
          << d["hostname"].get<std::string>() << "  registered " << d["registered_at"].get<std::string>() << "\n";
  });
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Register this endpoint and upload a snapshot of it", "mirage-centralize"};
  app.set_version_flag("--version", MIRAGE_VERSION);
  Options o;
  tool::Common common;
  tool::add_common(app, common);
  app.add_option("--root", o.root, "The endpoint's root directory (default /)");
  app.add_option("--device-id", o.device_id, "Device id (default: DMI UUID, else machine-id)");
  app.add_option("--state", o.state_dir, "Endpoint state directory (files cache)");
  app.add_option("--compression", o.compression, "zstd level for new chunks (default 3)")->check(CLI::Range(-7, 19));
  app.add_option("--threads", o.threads, "Worker threads (default 2)")->check(CLI::Range(1, 64));
  app.fallthrough();

  auto* pending = app.add_subcommand("pending", "List devices waiting to be accepted");
  auto* devices = app.add_subcommand("devices", "List devices");
  devices->add_option("--state", o.state_filter, "Only pending, accepted or rejected");
  auto* accept = app.add_subcommand("accept", "Accept a pending device");
  accept->add_option("device", o.device, "Device id")->required();
  accept->add_flag("--reference", o.reference, "Make it a reference device");
  accept->add_option("--policy", o.policy, "Upload policy to give it (default: default)");
  auto* reject = app.add_subcommand("reject", "Reject a device; it can no longer upload");
  reject->add_option("device", o.device, "Device id")->required();

  auto list = [&](const std::string& state) {
    auto client = tool::connect(common);
    json params = json::object();
    if (!state.empty()) params["state"] = state;
    print_devices(common, client.call("device.list", params)["devices"]);
    return 0;
  };
  auto set_state = [&](const char* method) {
    auto client = tool::connect(common);
    json params = {{"device_id", o.device}, {"reference", o.reference}};
    if (!o.policy.empty()) params["policy"] = o.policy;
    json d = client.call(method, params);
    tool::print(common, d, [&](std::ostream& out) {
      out << "device " << o.device << " is " << d["state"].get<std::string>()
          << (d["reference"].get<bool>() ? " (reference)" : "") << "\n";
    });
    return 0;
  };
  return tool::run(argc, argv, app, common,
                   {{pending, [&] { return list("pending"); }},
                    {devices, [&] { return list(o.state_filter); }},
                    {accept, [&] { return set_state("device.accept"); }},
                    {reject, [&] { return set_state("device.reject"); }},
                    {nullptr, [&] { return sync(common, o); }}});
}
