#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <vector>

#include "libmirage/materialize/content.hpp"
#include "libmirage/util/fd.hpp"

using namespace mirage;

namespace {

struct TempFile {
  std::string path;
  util::Fd fd;
  TempFile() {
    char tmpl[] = "/tmp/mirage-content-XXXXXX";
    fd = util::Fd(::mkstemp(tmpl));
    path = tmpl;
  }
  ~TempFile() { ::unlink(path.c_str()); }
  std::vector<uint8_t> read() const {
    std::vector<uint8_t> out(static_cast<size_t>(::lseek(fd.get(), 0, SEEK_END)));
    REQUIRE(::pread(fd.get(), out.data(), out.size(), 0) == static_cast<ssize_t>(out.size()));
    return out;
  }
  struct stat stat() const {
    struct stat st;
    REQUIRE(::fstat(fd.get(), &st) == 0);
    return st;
  }
};

/// 8 MiB of zeros with a few bytes at an unaligned offset, cut into unaligned pieces.
std::vector<uint8_t> mostly_zeros() {
  std::vector<uint8_t> data(8u << 20, 0);
  for (size_t i = 0; i < 6; ++i) data[5000001 + i] = static_cast<uint8_t>('a' + i);
  return data;
}

void write_in_pieces(materialize::ContentWriter& w, const std::vector<uint8_t>& data) {
  size_t piece = 12345;
  for (size_t pos = 0; pos < data.size(); pos += piece, piece = piece * 3 % 1000003 + 777)
    w.write(std::span(data).subspan(pos, std::min(piece, data.size() - pos)));
  w.finish();
}

}  // namespace

TEST_SUITE_BEGIN("materialize::ContentWriter");

TEST_CASE("a sparse entry keeps its zero blocks as holes, and its bytes") {
  TempFile f;
  REQUIRE(f.fd);
  auto data = mostly_zeros();
  tree::Entry e;
  e.size = data.size();
  e.sparse = true;
  materialize::ContentWriter w(f.fd.get(), e, f.path);
  write_in_pieces(w, data);
  CHECK(f.read() == data);
  auto st = f.stat();
  CHECK(static_cast<uint64_t>(st.st_size) == data.size());
  CHECK(static_cast<uint64_t>(st.st_blocks) * 512 < 64u * 1024);  // two 4 KiB blocks at most, plus slack
}

TEST_CASE("an entry without the sparse flag is written whole") {
  TempFile f;
  REQUIRE(f.fd);
  auto data = mostly_zeros();
  tree::Entry e;
  e.size = data.size();
  materialize::ContentWriter w(f.fd.get(), e, f.path);
  write_in_pieces(w, data);
  CHECK(f.read() == data);
  CHECK(static_cast<uint64_t>(f.stat().st_blocks) * 512 >= data.size());
}

TEST_CASE("trailing zeros of a sparse file become a hole of the right length") {
  TempFile f;
  REQUIRE(f.fd);
  std::vector<uint8_t> data(3u << 20, 0);
  data[0] = 1;
  tree::Entry e;
  e.size = data.size();
  e.sparse = true;
  materialize::ContentWriter w(f.fd.get(), e, f.path);
  w.write(data);
  w.finish();
  CHECK(f.read() == data);
}

TEST_CASE("a piece written again: zeros in a sparse file stay holes at any offset, anything else is written") {
  // A hole's chunks (the same zero run again and again) after a piece of data that leaves
  // the offset unaligned, then data again: the bytes all there, the zeros unallocated.
  std::vector<uint8_t> zeros(256u << 10, 0), data(5000, 7), expected;
  SUBCASE("sparse") {
    TempFile f;
    REQUIRE(f.fd);
    tree::Entry e;
    e.sparse = true;
    e.size = data.size() * 3 + zeros.size() * 40;
    materialize::ContentWriter w(f.fd.get(), e, f.path);
    w.write(data);
    w.write(zeros);
    for (int i = 0; i < 39; ++i) w.write_again(zeros);
    w.write(data);
    w.write_again(data);  // not zeros: written
    w.finish();
    expected = data;
    for (int i = 0; i < 40; ++i) expected.insert(expected.end(), zeros.begin(), zeros.end());
    expected.insert(expected.end(), data.begin(), data.end());
    expected.insert(expected.end(), data.begin(), data.end());
    CHECK(f.read() == expected);
    CHECK(static_cast<uint64_t>(f.stat().st_blocks) * 512 < 256u * 1024);
  }
  SUBCASE("not sparse: written whole") {
    TempFile f;
    REQUIRE(f.fd);
    tree::Entry e;
    e.size = zeros.size() * 3;
    materialize::ContentWriter w(f.fd.get(), e, f.path);
    w.write(zeros);
    w.write_again(zeros);
    w.write_again(zeros);
    w.finish();
    CHECK(f.read() == std::vector<uint8_t>(zeros.size() * 3, 0));
    CHECK(static_cast<uint64_t>(f.stat().st_blocks) * 512 >= zeros.size() * 3);
  }
}

TEST_SUITE_END();
