#include <doctest/doctest.h>

#include "libmirage/util/pool.hpp"

using mirage::util::Pool;

TEST_CASE("a pool lends idle handles first, makes new ones up to its bound, and stops when its factory gives up") {
  int made = 0;
  Pool<int> pool([&]() -> std::unique_ptr<int> { return made < 3 ? std::make_unique<int>(made++) : nullptr; }, 2);
  int* a = pool.take();
  int* b = pool.take();
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a != b);
  CHECK(pool.take() == nullptr);  // at the bound
  pool.give(a);
  CHECK(pool.take() == a);  // the idle one, not a new one
  CHECK(made == 2);
  pool.give(a);
  pool.give(b);

  int calls = 0;
  Pool<int> giving_up([&]() -> std::unique_ptr<int> {
    ++calls;
    return nullptr;
  });
  CHECK(giving_up.take() == nullptr);
  CHECK(giving_up.take() == nullptr);
  CHECK(calls == 1);  // asked once, then never again
  {
    Pool<int> unbounded([] { return std::make_unique<int>(7); });
    Pool<int>::Lease l1(unbounded), l2(unbounded), l3(unbounded);
    CHECK(unbounded.size() == 3);
  }
}
