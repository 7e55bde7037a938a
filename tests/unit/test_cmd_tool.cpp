#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "cmd/common/tool.hpp"

using namespace mirage;

TEST_SUITE_BEGIN("cmd::tool");

TEST_CASE("a table aligns its columns under their headers, numbers to the right") {
  tool::Table t({"DEVICE", "STATE", {"FILES", tool::Align::right}, "NOTE"});
  t.row({"pc-bob", "accepted", "12", ""});
  t.row({"a-much-longer-name", "pending", "3456", "new"});
  std::ostringstream out;
  t.print(out, "no devices");
  CHECK(out.str() ==
        "DEVICE              STATE     FILES  NOTE\n"
        "pc-bob              accepted     12\n"
        "a-much-longer-name  pending    3456  new\n");
}

TEST_CASE("a table counts UTF-8 characters, not bytes, and prints control characters as '?'") {
  tool::Table t({"NAME", "X"});
  t.row({"caf\xc3\xa9", "1"});
  t.row({"a\nb", "2"});
  std::ostringstream out;
  t.print(out);
  CHECK(out.str() == "NAME  X\ncaf\xc3\xa9  1\na?b   2\n");
}

TEST_CASE("an empty table says so in words, or prints its header") {
  tool::Table t({"DEVICE", "STATE"});
  std::ostringstream said, header;
  t.print(said, "no devices");
  CHECK(said.str() == "no devices\n");
  t.print(header);
  CHECK(header.str() == "DEVICE  STATE\n");
}

TEST_CASE("the nearest name is a typo's, not another word's") {
  std::vector<std::string> flags{"--device", "--snapshot", "--path", "--to", "--output"};
  CHECK(tool::nearest("--devcie", flags) == "--device");  // a swap is one edit
  CHECK(tool::nearest("--outptu", flags) == "--output");
  CHECK(tool::nearest("--snap", flags) == "--snapshot");  // an abbreviation
  CHECK_FALSE(tool::nearest("--frobnicate", flags));
  CHECK(tool::nearest("lst", {"list", "tag", "delete"}) == "list");
  CHECK_FALSE(tool::nearest("zz", {"list", "tag"}));
}

TEST_CASE("--input refuses a flag the command line also gives, naming it") {
  std::string file = std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") + "/mirage-unit-input.json";
  {
    std::ofstream f(file);
    f << R"({"device": "a", "path": ["/etc", "/home"]})";
  }
  auto args = tool::expand_input({"--input", file, "--to", "/tmp/r"});
  CHECK(args == std::vector<std::string>{"--to", "/tmp/r", "--device", "a", "--path", "/etc", "--path", "/home"});
  try {
    tool::expand_input({"--input", file, "--device=b"});
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::usage);
    CHECK(std::string(e.what()).find("--device is given both") != std::string::npos);
  }
  std::remove(file.c_str());
}

TEST_CASE("times and durations as people read them") {
  CHECK(tool::short_time("2026-12-03T07:51:28.123456789Z") == "2026-12-03 07:51:28");
  CHECK(tool::short_time("") == "-");
  CHECK(tool::human_seconds(5) == "5s");
  CHECK(tool::human_seconds(185) == "3m05s");
  CHECK(tool::human_seconds(7620) == "2h07m");
  CHECK(tool::human_seconds(3 * 86400 + 4 * 3600) == "3d04h");
}

TEST_CASE("text for a terminal shows control bytes as octal escapes, everything else as it is") {
  CHECK(tool::shown("plain /home/bob/é") == "plain /home/bob/é");
  CHECK(tool::shown("a\033[31mb\nc\td\x7f") == "a\\033[31mb\\012c\\011d\\177");
  CHECK(tool::shown("csi\xc2\x9b" "2J") == "csi\\302\\2332J");                 // U+009B
  CHECK(tool::shown("evil\xe2\x80\xaegnp.exe") == "evil\\342\\200\\256gnp.exe");  // U+202E
  CHECK(tool::shown("caf\xc3\xa9 \xe2\x80\x94") == "caf\xc3\xa9 \xe2\x80\x94");  // é and an em dash stay
  CHECK(tool::shown("cut\xc2") == "cut\xc2");  // a sequence cut short is left to the terminal's replacement
}

TEST_SUITE_END();
