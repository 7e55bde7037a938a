#include "libmirage/util/dynlib.hpp"

#include <dlfcn.h>

#include "libmirage/util/error.hpp"

namespace mirage::util {

namespace {
std::string last_dl_error() {
  const char* e = dlerror();
  return e ? e : "unknown error";
}
}  // namespace

DynLib::DynLib(const char* soname) : m_soname(soname), m_handle(dlopen(soname, RTLD_NOW | RTLD_LOCAL)) {
  if (!m_handle) throw Error(ErrorKind::failed, "cannot load " + m_soname + ": " + last_dl_error());
}

DynLib::~DynLib() { dlclose(m_handle); }

void* DynLib::address(const char* name) const {
  dlerror();
  void* p = dlsym(m_handle, name);
  if (!p) throw Error(ErrorKind::failed, m_soname + " lacks " + name + ": " + last_dl_error());
  return p;
}

}  // namespace mirage::util
