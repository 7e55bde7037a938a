#include "libmirage/util/sqlite.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <mutex>

#include <sqlite3.h>

#include "libmirage/util/error.hpp"

namespace mirage::util {

namespace {

/// The error kind of a failed SQLite call: damage is an integrity error, a file this
/// user may not write (or a read-only filesystem) a permission error.
ErrorKind kind_of(sqlite3* db) {
  if (!db) return ErrorKind::failed;
  switch (sqlite3_errcode(db) & 0xff) {
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: return ErrorKind::integrity;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH: return ErrorKind::permission;
    case SQLITE_CANTOPEN: {
      int e = sqlite3_system_errno(db);
      if (e == EACCES || e == EPERM || e == EROFS) return ErrorKind::permission;
      if (e == ENOENT || e == ENOTDIR) return ErrorKind::not_found;
      return ErrorKind::failed;
    }
    default: return ErrorKind::failed;
  }
}

/// SQLite counts every allocation under one process-wide mutex unless told not to;
/// with several connections busy at once (a server's handlers, an upload's puts beside
/// its lookups) threads queue on it. Nothing here reads those counts. It must be set
/// before SQLite initializes: in a process that initialized it already the call is
/// refused and nothing changes.
void configure_sqlite_once() {
  static std::once_flag once;
  std::call_once(once, [] { sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); });
}

}  // namespace

Db::Db(const std::string& path, Access access) : m_path(path) {
  configure_sqlite_once();
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  std::string name = path;
  if (access == Access::read_only) {
    // A WAL database opens read-only only where its -shm can be made or is there; a
    // cleanly closed one has no WAL left, and "immutable" then reads the file alone.
    struct stat wal {};
    bool has_wal = ::stat((path + "-wal").c_str(), &wal) == 0 && wal.st_size > 0 && ::access((path + "-shm").c_str(), R_OK) == 0;
    std::string escaped;
    for (char c : path) {
      if (c == '%' || c == '?' || c == '#') {
        char hex[4];
        std::snprintf(hex, sizeof hex, "%%%02X", static_cast<unsigned char>(c));
        escaped += hex;
      } else {
        escaped += c;
      }
    }
    name = "file:" + escaped + (has_wal ? "?mode=ro" : "?mode=ro&immutable=1");
    flags = SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX;
  }
  if (sqlite3_open_v2(name.c_str(), &m_db, flags, nullptr) != SQLITE_OK) {
    std::string msg = m_db ? sqlite3_errmsg(m_db) : "out of memory";
    ErrorKind kind = kind_of(m_db);
    sqlite3_close(m_db);
    m_db = nullptr;
    throw Error(kind, "open catalog " + path + ": " + msg);
  }
  sqlite3_busy_timeout(m_db, 30000);
  if (access == Access::read_only) return;
  try {
    configure();
  } catch (...) {
    sqlite3_close(m_db);  // the destructor does not run for a half-built Db
    throw;
  }
}

void Db::configure() {
  // Switching a new database to WAL needs it to itself and can fail at once (without
  // the busy wait) while another process is creating it: retry, bounded (~10 s).
  for (int attempt = 0;; ++attempt) {
    int rc = sqlite3_exec(m_db, "PRAGMA journal_mode=WAL", nullptr, nullptr, nullptr);
    if (rc == SQLITE_OK) break;
    if ((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED) fail("enable WAL");
    if (attempt >= 1000) fail("enable WAL");
    sqlite3_sleep(10);
  }
  exec("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;");
}

Db::~Db() { sqlite3_close_v2(m_db); }

void Db::fail(const std::string& context) const {
  // A full disk is said as such, with what to do, not as the statement that met it.
  if ((sqlite3_errcode(m_db) & 0xff) == SQLITE_FULL)
    throw Error(ErrorKind::failed, "catalog " + m_path + ": the disk is full (" + sqlite3_errmsg(m_db) +
                                       "); free space on its filesystem and try again");
  // So is a store that may not be written (a read-only mount, another user's files).
  if ((sqlite3_errcode(m_db) & 0xff) == SQLITE_READONLY)
    throw Error(ErrorKind::permission, "catalog " + m_path + " may not be written (" + sqlite3_errmsg(m_db) +
                                           "): a read-only mount or another user's files; only reads work on it");
  throw Error(kind_of(m_db), "catalog " + m_path + ": " + context + ": " + sqlite3_errmsg(m_db));
}

void Db::exec(const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(m_db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    throw Error(kind_of(m_db), "catalog " + m_path + ": " + msg);
  }
}

int64_t Db::last_insert_rowid() const { return sqlite3_last_insert_rowid(m_db); }
int Db::changes() const { return sqlite3_changes(m_db); }

Stmt::Stmt(Db& db, const std::string& sql) : m_db(db) {
  if (sqlite3_prepare_v2(db.handle(), sql.c_str(), -1, &m_stmt, nullptr) != SQLITE_OK) db.fail("prepare " + sql);
}
Stmt::~Stmt() { sqlite3_finalize(m_stmt); }

Stmt& Stmt::bind(int i, int64_t v) {
  if (sqlite3_bind_int64(m_stmt, i, v) != SQLITE_OK) m_db.fail("bind");
  return *this;
}
Stmt& Stmt::bind(int i, const std::string& v) {
  if (sqlite3_bind_text(m_stmt, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT) != SQLITE_OK)
    m_db.fail("bind");
  return *this;
}
Stmt& Stmt::bind_blob(int i, std::span<const uint8_t> v) {
  if (sqlite3_bind_blob(m_stmt, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT) != SQLITE_OK)
    m_db.fail("bind");
  return *this;
}
Stmt& Stmt::bind_null(int i) {
  if (sqlite3_bind_null(m_stmt, i) != SQLITE_OK) m_db.fail("bind");
  return *this;
}
bool Stmt::step() {
  int rc = sqlite3_step(m_stmt);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  std::string sql = sqlite3_sql(m_stmt);
  sqlite3_reset(m_stmt);
  m_db.fail("step " + sql);
}
void Stmt::reset() {
  sqlite3_reset(m_stmt);
  sqlite3_clear_bindings(m_stmt);
}
void Stmt::run() {
  while (step()) {
  }
  reset();
}
int64_t Stmt::scalar() {
  int64_t v = step() ? int64(0) : 0;
  reset();
  return v;
}
int64_t Stmt::int64(int col) const { return sqlite3_column_int64(m_stmt, col); }
std::string Stmt::text(int col) const {
  auto p = sqlite3_column_text(m_stmt, col);
  return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(m_stmt, col)))
           : std::string();
}
std::vector<uint8_t> Stmt::blob(int col) const {
  auto p = static_cast<const uint8_t*>(sqlite3_column_blob(m_stmt, col));
  return p ? std::vector<uint8_t>(p, p + sqlite3_column_bytes(m_stmt, col)) : std::vector<uint8_t>();
}
bool Stmt::is_null(int col) const { return sqlite3_column_type(m_stmt, col) == SQLITE_NULL; }

Transaction::Transaction(Db& db, Mode mode) : m_db(db) {
  m_db.exec(mode == Mode::immediate ? "BEGIN IMMEDIATE" : "BEGIN DEFERRED");
}
Transaction::~Transaction() {
  if (!m_done) {
    try {
      m_db.exec("ROLLBACK");
    } catch (...) {
    }
  }
}
void Transaction::commit() {
  m_db.exec("COMMIT");
  m_done = true;
}

}  // namespace mirage::util
