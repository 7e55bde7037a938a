#pragma once
// The SQLite catalog backend: one database file in WAL mode (DATA/catalog.db), its
// schema and every statement. The GC lock is a flock on gc.lock beside the file (released
// when the process dies).
#include <memory>
#include <string>

#include "libmirage/catalog/catalog.hpp"

namespace mirage::catalog::sqlite {

/// catalog::open for a SQLite file at `path`.
std::unique_ptr<Catalog> open(const std::string& path, bool create, Access access);

}  // namespace mirage::catalog::sqlite
