#pragma once
// The one wrapper around SQLite: a connection, prepared statements, transactions.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace mirage::util {

class Db;

/// A prepared statement; bind parameters are 1-based. step() returns true while a row
/// is available. reset() makes it reusable.
class Stmt {
 public:
  Stmt(Db& db, const std::string& sql);
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt();

  Stmt& bind(int i, int64_t v);
  Stmt& bind(int i, const std::string& v);
  Stmt& bind_blob(int i, std::span<const uint8_t> v);
  Stmt& bind_null(int i);
  bool step();
  void reset();
  /// Runs to completion (for statements without rows) and resets.
  void run();
  /// Column 0 of the first row (0 when there is none), then resets: no read is left
  /// open on the connection for a later write to upgrade (WAL refuses that at once
  /// when another connection wrote meanwhile).
  int64_t scalar();

  int64_t int64(int col) const;
  std::string text(int col) const;
  std::vector<uint8_t> blob(int col) const;
  bool is_null(int col) const;

 private:
  Db& m_db;
  sqlite3_stmt* m_stmt = nullptr;
};

class Db {
 public:
  enum class Access { read_write, read_only };
  /// Opens (creating) the database in WAL mode with a busy timeout; read_only opens an
  /// existing one on a read-only filesystem (with its WAL when one is there, else as
  /// immutable, which needs no lock file).
  explicit Db(const std::string& path, Access access = Access::read_write);
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
  ~Db();

  void exec(const std::string& sql);
  int64_t last_insert_rowid() const;
  int changes() const;
  sqlite3* handle() { return m_db; }
  [[noreturn]] void fail(const std::string& context) const;

 private:
  void configure();

  sqlite3* m_db = nullptr;
  std::string m_path;
};

/// BEGIN IMMEDIATE (a write transaction) or BEGIN DEFERRED (for a batch of reads: one
/// lock instead of one per statement) on construction; commit() commits; the
/// destructor rolls back.
class Transaction {
 public:
  enum class Mode { immediate, deferred };
  explicit Transaction(Db& db, Mode mode = Mode::immediate);
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction();
  void commit();

 private:
  Db& m_db;
  bool m_done = false;
};

}  // namespace mirage::util
