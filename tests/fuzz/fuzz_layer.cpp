// Endpoint files read by merge drivers (dpkg status, passwd, statoverride) and layer
// manifests from the store: parsing, merging and composing must never crash.
#include "libmirage/layer/image.hpp"
#include "libmirage/layer/records.hpp"
#include "libmirage/util/error.hpp"
#include "tests/fuzz/fuzz.hpp"

using namespace mirage;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  for (auto format : {layer::RecordFormat::dpkg_status, layer::RecordFormat::colon_lines, layer::RecordFormat::statoverride}) {
    try {
      auto set = layer::parse_records(format, text, "fuzz");
      auto again = layer::parse_records(format, layer::format_records(format, set), "fuzz");
      if (again != set) __builtin_trap();  // writing back must give the same records
      auto m = layer::merge3(set, {}, set, true);
      if (format == layer::RecordFormat::colon_lines) {
        std::set<std::string> names;
        for (const auto& r : set) names.insert(r.key);
        auto group = set;
        layer::remap_clashes(set, group, names, names);
      }
      for (const auto& r : set) layer::compare_versions(layer::stanza_field(r.text, "Version"), r.key);
    } catch (const Error&) {
    }
  }
  auto doc = nlohmann::json::parse(data, data + size, nullptr, false);
  if (!doc.is_discarded()) {
    try {
      layer::Layer l;
      layer::parse_manifest(doc, l, "fuzz");
      layer::Flat flat;
      layer::compose({{&l, &flat}});
    } catch (const Error&) {
    }
  }
  return 0;
}

std::vector<std::vector<uint8_t>> fuzz_seeds() {
  std::string status =
      "Package: a\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:2.0~rc1-3\n\nPackage: b\nVersion: 1\n\n";
  std::string passwd = "root:x:0:0::/root:/bin/sh\nsvc:x:100:100::/:/bin/false\nother:x:100:100::/:/bin/false\n";
  std::string manifest =
      R"({"kind":"app","root":"00","whiteouts":["/usr/x"],"opaque":[],"records":{"/etc/passwd":{"upsert":["a:x:1:1::/:/bin/sh\n"],"remove":["b"]}}})";
  return {std::vector<uint8_t>(status.begin(), status.end()), std::vector<uint8_t>(passwd.begin(), passwd.end()),
          std::vector<uint8_t>(manifest.begin(), manifest.end())};
}
