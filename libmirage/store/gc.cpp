#include "libmirage/store/gc.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "libmirage/store/repository.hpp"
#include "libmirage/tree/tree.hpp"
#include "libmirage/util/clock.hpp"
#include "libmirage/util/error.hpp"
#include "libmirage/util/sqlite.hpp"

namespace mirage::store {

namespace fs = std::filesystem;
using nlohmann::json;
using util::Digest;

namespace {

constexpr size_t k_sweep_batch = 20000;

/// The live set: trees walked and every id reachable, in temporary tables.
class Marker {
 public:
  explicit Marker(Repository& repo) : m_repo(repo), m_db(repo.catalog().db()) {
    m_db.exec(
        "CREATE TEMP TABLE IF NOT EXISTS gc_live(id BLOB PRIMARY KEY) WITHOUT ROWID;"
        "CREATE TEMP TABLE IF NOT EXISTS gc_trees(id BLOB PRIMARY KEY) WITHOUT ROWID;"
        "DELETE FROM temp.gc_live; DELETE FROM temp.gc_trees;");
    m_live = std::make_unique<util::Stmt>(m_db, "INSERT OR IGNORE INTO temp.gc_live(id) VALUES (?)");
    m_tree = std::make_unique<util::Stmt>(m_db, "INSERT OR IGNORE INTO temp.gc_trees(id) VALUES (?)");
  }

  /// Marks every root (snapshot or layer tree) not walked yet; returns how many.
  uint64_t mark_new_roots() {
    std::vector<Digest> roots;
    for (const char* sql : {"SELECT DISTINCT tree FROM snapshots WHERE tree NOT IN (SELECT id FROM temp.gc_trees)",
                            "SELECT DISTINCT tree FROM layers WHERE tree NOT IN (SELECT id FROM temp.gc_trees)"}) {
      util::Stmt s(m_db, sql);
      while (s.step()) {
        auto b = s.blob(0);
        if (b.size() != 32) throw Error(ErrorKind::integrity, "catalog: malformed root tree id; nothing deleted");
        roots.push_back(Digest::from_span(b));
      }
    }
    for (const auto& r : roots) mark_tree(r);
    return roots.size();
  }

  uint64_t trees() const { return m_trees; }

 private:
  void add(util::Stmt& s, const Digest& id) {
    s.bind_blob(1, id.bytes);
    s.run();
  }

  void mark_tree(const Digest& root) {
    std::vector<Digest> stack{root};
    while (!stack.empty()) {
      Digest id = stack.back();
      stack.pop_back();
      add(*m_tree, id);
      if (m_db.changes() == 0) continue;  // walked already (unchanged subtrees are shared)
      m_trees++;
      add(*m_live, id);
      // A piece at a time: a split directory is never held whole.
      try {
        tree::for_each_piece(
            id, [&](const Digest& d) { return m_repo.read_plain(d); }, "tree " + id.hex(),
            [&](const Digest& object, const tree::Tree& piece) {
              if (object != id) add(*m_live, object);
              for (const auto& e : piece.entries) {
                if (e.kind == tree::Kind::dir) stack.push_back(e.subtree);
                for (const auto& c : e.chunks) add(*m_live, c.id);
              }
            });
      } catch (const Error& e) {
        // Without this tree the live set is unknown: deleting anything could lose data.
        throw Error(ErrorKind::integrity, std::string(e.what()) + "; GC stopped, nothing deleted (run 'mirage check')");
      }
    }
  }

  Repository& m_repo;
  util::Db& m_db;
  std::unique_ptr<util::Stmt> m_live, m_tree;
  uint64_t m_trees = 0;
};

/// The GC lock: one collection at a time per data directory (released if we die).
class GcLock {
 public:
  explicit GcLock(const fs::path& file) : m_fd(::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600)) {
    if (!m_fd) throw_errno("open " + file.string());
    if (::flock(m_fd.get(), LOCK_EX | LOCK_NB) != 0)
      throw Error(ErrorKind::precondition, "another GC is running on this data directory");
  }

 private:
  util::Fd m_fd;
};

struct PackUse {
  int64_t id = 0;
  std::string name;
  uint64_t size = 0;
  bool idle = false;  ///< sealed, or unsealed and not written within the grace period
  bool read_only = false;
  int64_t retired_at = 0;
  uint64_t live_chunks = 0;
  uint64_t live_bytes = 0;
};

}  // namespace

json collect_garbage(Repository& repo, const GcOptions& o) {
  auto started = std::chrono::steady_clock::now();
  GcLock lock(repo.path() / "gc.lock");
  auto& cat = repo.catalog();
  auto& db = cat.db();
  auto say = [&](const std::string& s) {
    if (o.progress) o.progress(s);
  };
  int64_t now = util::now_ns();
  int64_t cutoff = now - o.grace_ns;
  json report = {{"dry_run", o.dry_run}, {"grace_seconds", o.grace_ns / 1000000000}};

  // 1. Mark.
  say("gc: marking what snapshots and layers reach");
  Marker marker(repo);
  uint64_t roots = 0;
  {
    util::Transaction reads(db, util::Transaction::Mode::deferred);  // one read snapshot, few commits of temp rows
    roots = marker.mark_new_roots();
    reads.commit();
  }
  if (o.after_mark) o.after_mark();

  // 2. Sweep in batches, each marking roots committed meanwhile first.
  say("gc: sweeping the index");
  uint64_t in_flight = 0;
  auto pin_in_flight = [&] {
    // Uploads in flight pin what was added since the oldest of them began.
    util::Stmt s(db, "SELECT count(*), min(started_at) FROM uploads WHERE touched_at >= ?");
    s.bind(1, now - o.session_timeout_ns);
    s.step();
    in_flight = static_cast<uint64_t>(s.int64(0));
    if (in_flight) cutoff = std::min(cutoff, s.int64(1));
  };
  uint64_t scanned = 0, unreferenced = 0, pinned = 0, deleted = 0, deleted_bytes = 0;
  std::vector<uint8_t> last;
  for (bool more = true; more;) {
    util::Transaction tx(db, o.dry_run ? util::Transaction::Mode::deferred : util::Transaction::Mode::immediate);
    roots += marker.mark_new_roots();
    pin_in_flight();
    util::Stmt page(db, std::string("SELECT c.id, c.added_at, c.stored, l.id IS NOT NULL FROM chunks c "
                                    "LEFT JOIN temp.gc_live l ON l.id = c.id ") +
                            (last.empty() ? "" : "WHERE c.id > ? ") + "ORDER BY c.id LIMIT " +
                            std::to_string(k_sweep_batch));
    if (!last.empty()) page.bind_blob(1, last);
    util::Stmt del(db, "DELETE FROM chunks WHERE id = ?");
    size_t n = 0;
    while (page.step()) {
      ++n;
      last = page.blob(0);
      if (page.int64(3)) continue;
      unreferenced++;
      if (page.int64(1) >= cutoff) {
        pinned++;
        continue;
      }
      deleted++;
      deleted_bytes += static_cast<uint64_t>(page.int64(2)) + k_record_header;
      if (!o.dry_run) del.bind_blob(1, last).run();
    }
    scanned += n;
    more = n == k_sweep_batch;
    tx.commit();
  }
  report["roots"] = roots;
  report["trees"] = marker.trees();
  report["chunks"] = scanned;
  report["unreferenced"] = unreferenced;
  report["pinned"] = pinned;
  report["uploads_in_flight"] = in_flight;
  report[o.dry_run ? "would_delete" : "deleted"] = deleted;
  report[o.dry_run ? "would_delete_bytes" : "deleted_bytes"] = deleted_bytes;

  // 3. Packs: how much of each is live.
  std::vector<PackUse> packs;
  {
    util::Transaction reads(db, util::Transaction::Mode::deferred);
    util::Stmt s(db,
                 "SELECT p.id, p.name, p.size, p.sealed, p.written_at, v.read_only, p.retired_at, "
                 "(SELECT count(*) FROM chunks c WHERE c.pack = p.id), "
                 "(SELECT coalesce(sum(c.stored), 0) FROM chunks c WHERE c.pack = p.id) "
                 "FROM packs p JOIN volumes v ON v.id = p.volume ORDER BY p.id");
    while (s.step()) {
      PackUse p;
      p.id = s.int64(0);
      p.name = s.text(1);
      p.size = static_cast<uint64_t>(s.int64(2));
      p.idle = s.int64(3) != 0 || s.int64(4) < cutoff;
      p.read_only = s.int64(5) != 0;
      p.retired_at = s.int64(6);
      p.live_chunks = static_cast<uint64_t>(s.int64(7));
      p.live_bytes = static_cast<uint64_t>(s.int64(8)) + p.live_chunks * k_record_header;
      packs.push_back(std::move(p));
    }
  }
  uint64_t repacked = 0, retired = 0, moved_bytes = 0, freed_bytes = 0, files_deleted = 0, awaiting = 0;
  uint64_t budget = o.max_repack_bytes;
  std::vector<uint8_t> buf;
  for (const auto& p : packs) {
    bool ours = std::any_of(repo.m_writers.begin(), repo.m_writers.end(), [&](const auto& w) { return w.second.pack == p.id; });
    if (p.retired_at || p.read_only || !p.idle || ours) continue;
    uint64_t payload = p.size > k_pack_magic.size() ? p.size - k_pack_magic.size() : 0;
    bool empty = p.live_chunks == 0;
    if (!empty && (payload == 0 || double(p.live_bytes) >= o.repack_below * double(payload))) continue;
    if (!empty && p.live_bytes > budget) continue;
    if (o.dry_run) {
      (empty ? retired : repacked)++;
      freed_bytes += p.size - p.live_bytes;
      continue;
    }
    say("gc: rewriting pack " + p.name);
    // Copy the live records (verified as they are read) to this process's pack.
    std::vector<std::pair<Digest, catalog::ChunkLocation>> live;
    {
      util::Stmt s(db, "SELECT id, offset, stored, raw, codec FROM chunks WHERE pack = ? ORDER BY offset");
      s.bind(1, p.id);
      while (s.step())
        live.push_back({Digest::from_span(s.blob(0)),
                        {p.id, static_cast<uint64_t>(s.int64(1)), static_cast<uint32_t>(s.int64(2)),
                         static_cast<uint32_t>(s.int64(3)), static_cast<uint8_t>(s.int64(4))}});
    }
    buf.clear();
    std::vector<uint64_t> at;
    bool damaged = false;
    for (const auto& [id, loc] : live) {
      at.push_back(buf.size());
      try {
        repo.read_record_at(id, loc, buf);
      } catch (const Error& e) {
        say(std::string("gc: pack ") + p.name + " left as it is: " + e.what());
        damaged = true;
        break;
      }
    }
    if (damaged) continue;
    Repository::Writer* w = nullptr;
    uint64_t base = 0;
    if (!live.empty()) {
      w = &repo.writer(0, buf.size());
      base = repo.append(*w, buf);
    }
    util::Transaction tx(db);
    util::Stmt move(db, "UPDATE chunks SET pack = ?, offset = ? WHERE id = ? AND pack = ? AND offset = ?");
    for (size_t i = 0; i < live.size(); ++i) {
      move.bind(1, w->pack)
          .bind(2, static_cast<int64_t>(base + at[i]))
          .bind_blob(3, live[i].first.bytes)
          .bind(4, p.id)
          .bind(5, static_cast<int64_t>(live[i].second.offset))
          .run();
    }
    if (w) {
      util::Stmt(db, "UPDATE packs SET size = ?, written_at = ? WHERE id = ?")
          .bind(1, static_cast<int64_t>(w->size))
          .bind(2, now)
          .bind(3, w->pack)
          .run();
    }
    // Retire only if no writer added records meanwhile (its size would differ).
    util::Stmt(db, "UPDATE packs SET retired_at = ? WHERE id = ? AND size = ? AND retired_at = 0")
        .bind(1, now)
        .bind(2, p.id)
        .bind(3, static_cast<int64_t>(p.size))
        .run();
    bool took = db.changes() == 1;
    tx.commit();
    if (!took) continue;
    (empty ? retired : repacked)++;
    moved_bytes += buf.size();
    budget -= std::min<uint64_t>(budget, buf.size());
    freed_bytes += p.size - buf.size();
  }
  // Retired packs whose grace has passed: delete the files, then the rows.
  if (!o.dry_run) {
    std::vector<catalog::Pack> gone;
    {
      util::Stmt s(db, "SELECT id, name, volume, size, retired_at FROM packs WHERE retired_at != 0");
      while (s.step()) {
        if (s.int64(4) > cutoff) {
          awaiting++;
          continue;
        }
        gone.push_back({s.int64(0), s.text(1), s.int64(2), static_cast<uint64_t>(s.int64(3))});
      }
    }
    for (const auto& p : gone) {
      // The check (never true: a retired pack gains no records) and the delete in one
      // write transaction.
      util::Transaction tx(db);
      if (util::Stmt(db, "SELECT count(*) FROM chunks WHERE pack = ?").bind(1, p.id).scalar() != 0) continue;
      repo.pack_volume(p).remove(p.name);  // gone already (a GC killed after this) is fine
      util::Stmt(db, "DELETE FROM packs WHERE id = ?").bind(1, p.id).run();
      tx.commit();
      files_deleted++;
    }
  }
  report["packs"] = packs.size();
  report[o.dry_run ? "would_repack" : "repacked"] = repacked;
  report[o.dry_run ? "would_retire" : "retired"] = retired;
  report["moved_bytes"] = moved_bytes;
  report[o.dry_run ? "would_free_bytes" : "freed_bytes"] = freed_bytes;
  report["pack_files_deleted"] = files_deleted;
  report["packs_awaiting_deletion"] = awaiting;
  report["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  say("");
  return report;
}

}  // namespace mirage::store
