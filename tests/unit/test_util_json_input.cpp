#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "libmirage/util/json_input.hpp"
#include "tests/unit/check_error.hpp"

using namespace mirage;
namespace fs = std::filesystem;

namespace {

std::string message_of(const std::string& source) {
  try {
    util::read_json_input(source, "--file");
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST_SUITE_BEGIN("util::read_json_input");

TEST_CASE("a file, a missing file, text that is not JSON") {
  std::string tmpl = (fs::temp_directory_path() / "mirage-json-XXXXXX").string();
  fs::path dir = ::mkdtemp(tmpl.data());
  std::ofstream(dir / "ok.json") << "{\"a\": [1, 2]}";
  std::ofstream(dir / "bad.json") << "{\n  \"a\": tru\n}";
  std::ofstream(dir / "empty.json") << "";
  CHECK(util::read_json_input((dir / "ok.json").string(), "--file") == nlohmann::json{{"a", {1, 2}}});

  CHECK_ERROR_KIND(util::read_json_input((dir / "missing.json").string(), "--file"), ErrorKind::not_found);
  CHECK(message_of((dir / "missing.json").string()).find((dir / "missing.json").string()) != std::string::npos);

  CHECK_ERROR_KIND(util::read_json_input((dir / "bad.json").string(), "--file"), ErrorKind::usage);
  std::string m = message_of((dir / "bad.json").string());
  CAPTURE(m);
  CHECK(m.rfind("--file " + (dir / "bad.json").string() + ": not valid JSON at line 2, column ", 0) == 0);
  CHECK(m.find("(byte ") != std::string::npos);

  CHECK_ERROR_KIND(util::read_json_input((dir / "empty.json").string(), "--file"), ErrorKind::usage);
  fs::remove_all(dir);
}

TEST_CASE("- reads standard input") {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  std::string text = "[true, null]";
  REQUIRE(::write(fds[1], text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  ::close(fds[1]);
  int saved = ::dup(0);
  ::dup2(fds[0], 0);
  ::close(fds[0]);
  nlohmann::json got;
  std::string kind = test::thrown_kind([&] { got = util::read_json_input("-", "--input"); });
  ::dup2(saved, 0);
  ::close(saved);
  CHECK(kind == "no error");
  CHECK(got == nlohmann::json::array({true, nullptr}));
}

TEST_CASE("a source over max_bytes is refused without reading it all") {
  std::string tmpl = (fs::temp_directory_path() / "mirage-json-XXXXXX").string();
  fs::path dir = ::mkdtemp(tmpl.data());
  std::ofstream(dir / "ten.json") << "[1,2,3,44]";
  CHECK(util::read_json_input((dir / "ten.json").string(), "--rules", 10) == nlohmann::json{1, 2, 3, 44});
  CHECK_ERROR_KIND(util::read_json_input((dir / "ten.json").string(), "--rules", 9), ErrorKind::usage);
  std::string m;
  try {
    util::read_json_input("/dev/zero", "--rules", 1 << 20);  // endless
  } catch (const Error& e) {
    m = e.what();
  }
  CHECK(m == "--rules /dev/zero: larger than 1048576 bytes");
  fs::remove_all(dir);
}

TEST_SUITE_END();
