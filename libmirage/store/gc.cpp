#include "libmirage/store/gc.hpp"

#include <algorithm>
#include <chrono>

#include "libmirage/store/repository.hpp"
#include "libmirage/tree/tree.hpp"
#include "libmirage/util/clock.hpp"
#include "libmirage/util/error.hpp"

namespace mirage::store {

using nlohmann::json;
using util::Digest;

namespace {

constexpr size_t k_sweep_batch = 20000;

/// Marks what snapshots and layers reach, into the catalog's mark set.
class Marker {
 public:
  Marker(Repository& repo, const std::vector<std::string>& skip) : m_repo(repo), m_marks(repo.catalog().begin_marks()) {
    m_marks->skip_snapshots(skip);
  }

  catalog::MarkSet& marks() { return *m_marks; }

  /// Marks every root (snapshot or layer tree) not walked yet; returns how many.
  uint64_t mark_new_roots() {
    std::vector<Digest> roots;
    try {
      roots = m_marks->new_roots();
    } catch (const Error& e) {
      if (e.kind() == ErrorKind::integrity) throw Error(ErrorKind::integrity, std::string(e.what()) + "; nothing deleted");
      throw;
    }
    for (const auto& r : roots) mark_tree(r);
    return roots.size();
  }

  uint64_t trees() const { return m_trees; }

 private:
  void mark_tree(const Digest& root) {
    tree::walk_reachable(
        root, [&](const Digest& d) { return m_repo.read_plain(d); },
        [&](const Digest& dir) {
          if (!m_marks->add_tree(dir)) return false;
          m_trees++;
          m_marks->add_live(dir);
          return true;
        },
        [&](const Digest& object) { m_marks->add_live(object); },
        [](const Digest&, const Error& e) {
          // Without this tree the live set is unknown: deleting anything could lose data.
          throw Error(ErrorKind::integrity, std::string(e.what()) + "; GC stopped, nothing deleted (run 'mirage check')");
        });
  }

  Repository& m_repo;
  std::unique_ptr<catalog::MarkSet> m_marks;
  uint64_t m_trees = 0;
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

/// One GC run, in its phases: mark, sweep the index, repack or retire packs, delete the
/// files of retired packs whose grace has passed. Each phase adds its counts to the report.
class GarbageCollector {
 public:
  GarbageCollector(Repository& repo, const GcOptions& o)
      : m_repo(repo), m_cat(repo.catalog()), m_o(o), m_now(util::now_ns()), m_cutoff(m_now - o.grace_ns) {}

  GcReport run() {
    auto started = std::chrono::steady_clock::now();
    auto lock = m_cat.gc_lock();
    m_report.dry_run = m_o.dry_run;
    m_report.grace_seconds = m_o.grace_ns / 1000000000;
    say("gc: marking what snapshots and layers reach");
    Marker marker(m_repo, m_o.skip_snapshots);
    {
      catalog::Transaction reads(m_cat, Mode::read);  // one read snapshot, few commits of marks
      m_roots = marker.mark_new_roots();
      reads.commit();
    }
    if (m_o.after_mark) m_o.after_mark();
    sweep(marker);
    auto packs = pack_uses();
    for (const auto& p : packs) rewrite(p);
    if (!m_o.dry_run) delete_retired();
    m_report.packs = packs.size();
    m_report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    say("");
    return m_report;
  }

 private:
  using Mode = catalog::Transaction::Mode;

  void say(const std::string& s) {
    if (m_o.progress) m_o.progress(s);
  }

  /// Sweeps the index in batches, each marking roots committed meanwhile first.
  void sweep(Marker& marker) {
    say("gc: sweeping the index");
    uint64_t in_flight = 0, scanned = 0, unreferenced = 0, pinned = 0, deleted = 0, deleted_bytes = 0;
    std::optional<Digest> last;
    for (bool more = true; more;) {
      catalog::Transaction tx(m_cat, m_o.dry_run ? Mode::read : Mode::write);
      m_roots += marker.mark_new_roots();
      // Uploads in flight pin what was added since the oldest of them began.
      auto uploads = m_cat.uploads_in_flight(m_now - m_o.session_timeout_ns);
      in_flight = static_cast<uint64_t>(uploads.count);
      if (in_flight) m_cutoff = std::min(m_cutoff, uploads.oldest_start);
      auto page = marker.marks().sweep_candidates(last, k_sweep_batch);
      std::vector<Digest> drop;
      for (const auto& c : page) {
        last = c.id;
        if (c.live) continue;
        unreferenced++;
        if (c.added_at >= m_cutoff) {
          pinned++;
          continue;
        }
        deleted++;
        deleted_bytes += uint64_t(c.stored) + k_record_header;
        drop.push_back(c.id);
      }
      if (!m_o.dry_run) m_cat.chunks().delete_chunks(drop);
      scanned += page.size();
      more = page.size() == k_sweep_batch;
      tx.commit();
    }
    m_report.roots = m_roots;
    m_report.trees = marker.trees();
    m_report.chunks = scanned;
    m_report.unreferenced = unreferenced;
    m_report.pinned = pinned;
    m_report.uploads_in_flight = in_flight;
    m_report.deleted = deleted;
    m_report.deleted_bytes = deleted_bytes;
  }

  /// How much of each pack is live.
  std::vector<PackUse> pack_uses() {
    std::vector<PackUse> packs;
    catalog::Transaction reads(m_cat, Mode::read);
    for (const auto& u : m_cat.pack_usage()) {
      PackUse p;
      p.id = u.id;
      p.name = u.name;
      p.size = u.size;
      p.idle = u.sealed || u.written_at < m_cutoff;
      p.read_only = u.read_only;
      p.retired_at = u.retired_at;
      p.live_chunks = u.live_chunks;
      p.live_bytes = u.live_stored + u.live_chunks * k_record_header;
      packs.push_back(std::move(p));
    }
    return packs;
  }

  /// Retires a pack with nothing live, or copies the live records of one mostly dead
  /// (within the run's byte budget) to this process's pack and retires it.
  void rewrite(const PackUse& p) {
    bool ours = std::any_of(m_repo.m_writers.begin(), m_repo.m_writers.end(),
                            [&](const auto& w) { return w.second.pack == p.id; });
    if (p.retired_at || p.read_only || !p.idle || ours) return;
    uint64_t payload = p.size > k_pack_magic.size() ? p.size - k_pack_magic.size() : 0;
    bool empty = p.live_chunks == 0;
    if (!empty && (payload == 0 || double(p.live_bytes) >= m_o.repack_below * double(payload))) return;
    if (!empty && p.live_bytes > m_budget) return;
    if (m_o.dry_run) {
      (empty ? m_report.retired : m_report.repacked)++;
      m_report.freed_bytes += p.size - p.live_bytes;
      return;
    }
    say("gc: rewriting pack " + p.name);
    // Copy the live records (verified as they are read) to this process's pack.
    auto live = m_cat.chunks().chunks_in_pack(p.id);
    m_buf.clear();
    std::vector<uint64_t> at;
    for (const auto& [id, loc] : live) {
      at.push_back(m_buf.size());
      try {
        m_repo.read_record_at(id, loc, m_buf);
      } catch (const Error& e) {
        say(std::string("gc: pack ") + p.name + " left as it is: " + e.what());
        return;
      }
    }
    Repository::Writer* w = nullptr;
    uint64_t base = 0;
    if (!live.empty()) {
      w = &m_repo.writer(0, m_buf.size());
      base = m_repo.append(*w, m_buf);
    }
    catalog::Transaction tx(m_cat);
    for (size_t i = 0; i < live.size(); ++i) m_cat.chunks().move_chunk(live[i].first, live[i].second, w->pack, base + at[i]);
    if (w) m_cat.set_pack_size(w->pack, w->size, m_now);
    // Retire only if no writer added records meanwhile (its size would differ).
    bool took = m_cat.retire_pack(p.id, p.size, m_now);
    tx.commit();
    if (!took) return;
    (empty ? m_report.retired : m_report.repacked)++;
    m_report.moved_bytes += m_buf.size();
    m_budget -= std::min<uint64_t>(m_budget, m_buf.size());
    m_report.freed_bytes += p.size - m_buf.size();
  }

  /// Retired packs whose grace has passed: deletes the files, then the rows.
  void delete_retired() {
    std::vector<catalog::Pack> gone;
    for (const auto& p : m_cat.packs()) {
      if (!p.retired_at) continue;
      if (p.retired_at > m_cutoff) {
        m_report.packs_awaiting_deletion++;
        continue;
      }
      gone.push_back(p);
    }
    for (const auto& p : gone) {
      // The check (never true: a retired pack gains no records) and the delete in one
      // write transaction.
      catalog::Transaction tx(m_cat);
      if (m_cat.chunks().pack_chunk_count(p.id) != 0) continue;
      m_repo.pack_volume(p).remove(p.name);  // gone already (a GC killed after this) is fine
      m_cat.delete_pack(p.id);
      tx.commit();
      m_report.pack_files_deleted++;
    }
  }

  Repository& m_repo;
  catalog::Catalog& m_cat;
  const GcOptions& m_o;
  const int64_t m_now;
  int64_t m_cutoff;
  GcReport m_report;
  uint64_t m_roots = 0;
  uint64_t m_budget = m_o.max_repack_bytes;
  std::vector<uint8_t> m_buf;
};

GcReport collect_garbage(Repository& repo, const GcOptions& o) { return GarbageCollector(repo, o).run(); }

void to_json(json& j, const GcReport& r) {
  // A dry run names what it counts as what it would do.
  auto key = [&](const char* done, const char* would) { return r.dry_run ? would : done; };
  j = {{"dry_run", r.dry_run},
       {"grace_seconds", r.grace_seconds},
       {"roots", r.roots},
       {"trees", r.trees},
       {"chunks", r.chunks},
       {"unreferenced", r.unreferenced},
       {"pinned", r.pinned},
       {"uploads_in_flight", r.uploads_in_flight},
       {key("deleted", "would_delete"), r.deleted},
       {key("deleted_bytes", "would_delete_bytes"), r.deleted_bytes},
       {"packs", r.packs},
       {key("repacked", "would_repack"), r.repacked},
       {key("retired", "would_retire"), r.retired},
       {"moved_bytes", r.moved_bytes},
       {key("freed_bytes", "would_free_bytes"), r.freed_bytes},
       {"pack_files_deleted", r.pack_files_deleted},
       {"packs_awaiting_deletion", r.packs_awaiting_deletion},
       {"seconds", r.seconds}};
}

}  // namespace mirage::store
