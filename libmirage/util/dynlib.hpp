#pragma once
// A shared library opened on first use (dlopen) rather than at the program's start.
//
// For dependencies most commands never touch: libcurl (HTTP(S) servers only) drags in some
// thirty libraries (Kerberos, LDAP, SSH, nghttp2, IDN...) and libarchive (`dump` only)
// libxml2 and ICU. Linked normally, the dynamic loader maps all of them before main(), and
// on a cold page cache that costs every command a quarter of a second of disk reads
// (`mirage-restore ls` on a local store included). Opened here, they cost only the commands
// that use them. The libraries are still the packaged ones, found by their SONAME.

#include <string>

namespace mirage::util {

class DynLib {
 public:
  /// Opens `soname` (e.g. "libcurl.so.4"); throws Error(failed) naming it and dlerror()
  /// when it cannot be loaded (the package missing).
  explicit DynLib(const char* soname);
  ~DynLib();
  DynLib(const DynLib&) = delete;
  DynLib& operator=(const DynLib&) = delete;

  /// The function `name`, typed as `F` (give it `decltype(&::name)` from the library's own
  /// header, so the type is the header's); throws Error(failed) when the library lacks it.
  template <class F>
  F function(const char* name) const {
    return reinterpret_cast<F>(address(name));
  }

 private:
  void* address(const char* name) const;
  std::string m_soname;
  void* m_handle;
};

}  // namespace mirage::util

/// A member of a table of `lib`'s functions: `MIRAGE_DYNLIB_FUNCTION(easy_init,
/// curl_easy_init);` declares `easy_init`, typed by the header's declaration of
/// curl_easy_init and loaded from the table's DynLib member `lib`.
#define MIRAGE_DYNLIB_FUNCTION(member, name) decltype(&::name) member = lib.function<decltype(&::name)>(#name)
