#include <doctest/doctest.h>

#include <zstd.h>

#include "libmirage/util/dynlib.hpp"
#include "libmirage/util/error.hpp"

using mirage::Error;
using mirage::ErrorKind;
using mirage::util::DynLib;

TEST_CASE("a library opened on use gives its functions typed by their header") {
  DynLib lib("libzstd.so.1");
  auto bound = lib.function<decltype(&::ZSTD_compressBound)>("ZSTD_compressBound");
  CHECK(bound(1000) == ZSTD_compressBound(1000));
}

TEST_CASE("a missing library or function is an error that names it") {
  try {
    DynLib lib("libmirage-no-such-library.so.9");
    FAIL("opened a library that does not exist");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::failed);
    CHECK(std::string(e.what()).find("libmirage-no-such-library.so.9") != std::string::npos);
  }
  DynLib lib("libzstd.so.1");
  try {
    lib.function<void (*)()>("ZSTD_no_such_function");
    FAIL("found a function that does not exist");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::failed);
    CHECK(std::string(e.what()).find("ZSTD_no_such_function") != std::string::npos);
  }
}
