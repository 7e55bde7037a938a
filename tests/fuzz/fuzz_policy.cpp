// Upload policies are JSON documents from admins: parsing and classifying must never crash.
#include "libmirage/policy/upload_policy.hpp"
#include "libmirage/util/error.hpp"
#include "tests/fuzz/fuzz.hpp"

using namespace mirage;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto doc = nlohmann::json::parse(data, data + size, nullptr, false);
  if (doc.is_discarded()) return 0;
  try {
    auto p = policy::UploadPolicy::from_json(doc);
    p.classify("/var/cache/apt/x", false);
    p.classify("/home/u", true);
    p.in_user_area("/srv/x");
  } catch (const Error&) {
  }
  return 0;
}

std::vector<std::vector<uint8_t>> fuzz_seeds() {
  std::string s = policy::UploadPolicy::defaults().to_json().dump();
  std::string t = R"({"version":1,"unprotected":["/var/*","[a-"],"exceptions":["/var/cache/keep","x"]})";
  return {std::vector<uint8_t>(s.begin(), s.end()), std::vector<uint8_t>(t.begin(), t.end())};
}
