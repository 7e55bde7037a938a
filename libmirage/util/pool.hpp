#pragma once
// The one pool of reusable handles (curl handles, protocol connections): lends an idle
// one, else makes a new one while fewer than `max` exist, else none (the caller falls
// back to a shared handle). Thread-safe; handles live as long as the pool.
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

namespace mirage::util {

template <class T>
class Pool {
 public:
  /// Makes a handle; nullptr means "no more" (the pool stops making them). An exception
  /// propagates to take()'s caller and the pool stays as it was.
  using Make = std::function<std::unique_ptr<T>()>;
  /// `max` 0: no bound.
  explicit Pool(Make make, size_t max = 0) : m_make(std::move(make)), m_max(max) {}
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  /// An idle handle, a new one, or nullptr (at `max`, no factory, or the factory gave up).
  T* take() {
    std::lock_guard lock(m_mutex);
    if (!m_idle.empty()) {
      T* h = m_idle.back();
      m_idle.pop_back();
      return h;
    }
    if (!m_make || (m_max != 0 && m_all.size() >= m_max)) return nullptr;
    auto made = m_make();
    if (!made) {
      m_make = nullptr;
      return nullptr;
    }
    m_all.push_back(std::move(made));
    return m_all.back().get();
  }
  /// Returns a handle take() gave (nullptr is ignored).
  void give(T* h) {
    if (!h) return;
    std::lock_guard lock(m_mutex);
    m_idle.push_back(h);
  }
  /// Handles made so far.
  size_t size() const {
    std::lock_guard lock(m_mutex);
    return m_all.size();
  }

  /// A handle for one scope (may be empty: see take()).
  class Lease {
   public:
    explicit Lease(Pool& pool) : m_pool(pool), m_handle(pool.take()) {}
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { m_pool.give(m_handle); }
    T* get() const { return m_handle; }

   private:
    Pool& m_pool;
    T* m_handle;
  };

 private:
  Make m_make;
  size_t m_max;
  mutable std::mutex m_mutex;
  std::vector<std::unique_ptr<T>> m_all;
  std::vector<T*> m_idle;
};

}  // namespace mirage::util
