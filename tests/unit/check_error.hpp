#pragma once
// Checks that an expression throws a mirage::Error of one kind. The kind is the
// exit-code contract (DESIGN.md section 3), so a test names it; CHECK_THROWS_AS(x,
// Error) would pass with any kind at all.
#include <doctest/doctest.h>

#include <exception>
#include <string>

#include "libmirage/util/error.hpp"

namespace mirage::test {

/// What running `f` threw: the kind name of a mirage::Error ("usage", "integrity"...),
/// "no error" when it returned, "not a mirage::Error: <what>" for anything else.
template <class F>
std::string thrown_kind(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return std::string(kind_name(e.kind()));
  } catch (const std::exception& e) {
    return std::string("not a mirage::Error: ") + e.what();
  } catch (...) {
    return "not a mirage::Error: unknown exception";
  }
  return "no error";
}

}  // namespace mirage::test

/// CHECK_ERROR_KIND(decode(bytes, "t"), ErrorKind::integrity)
#define CHECK_ERROR_KIND(expr, kind) \
  CHECK(::mirage::test::thrown_kind([&] { (void)(expr); }) == std::string(::mirage::kind_name(kind)))
#define REQUIRE_ERROR_KIND(expr, kind) \
  REQUIRE(::mirage::test::thrown_kind([&] { (void)(expr); }) == std::string(::mirage::kind_name(kind)))
