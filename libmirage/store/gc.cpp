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
  explicit Marker(Repository& repo) : m_repo(repo), m_marks(repo.catalog().begin_marks()) {}

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
    std::vector<Digest> stack{root};
    while (!stack.empty()) {
      Digest id = stack.back();
      stack.pop_back();
      if (!m_marks->add_tree(id)) continue;  // walked already (unchanged subtrees are shared)
      m_trees++;
      m_marks->add_live(id);
      // A piece at a time: a split directory is never held whole.
      try {
        tree::for_each_piece(
            id, [&](const Digest& d) { return m_repo.read_plain(d); }, "tree " + id.hex(),
            [&](const Digest& object, const tree::Tree& piece) {
              if (object != id) m_marks->add_live(object);
              for (const auto& e : piece.entries) {
                if (e.kind == tree::Kind::dir) stack.push_back(e.subtree);
                for (const auto& c : e.chunks) m_marks->add_live(c.id);
              }
            });
      } catch (const Error& e) {
        // Without this tree the live set is unknown: deleting anything could lose data.
        throw Error(ErrorKind::integrity, std::string(e.what()) + "; GC stopped, nothing deleted (run 'mirage check')");
      }
    }
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

json collect_garbage(Repository& repo, const GcOptions& o) {
  auto started = std::chrono::steady_clock::now();
  auto& cat = repo.catalog();
  auto lock = cat.gc_lock();
  auto say = [&](const std::string& s) {
    if (o.progress) o.progress(s);
  };
  int64_t now = util::now_ns();
  int64_t cutoff = now - o.grace_ns;
  json report = {{"dry_run", o.dry_run}, {"grace_seconds", o.grace_ns / 1000000000}};
  using Mode = catalog::Transaction::Mode;

  // 1. Mark.
  say("gc: marking what snapshots and layers reach");
  Marker marker(repo);
  uint64_t roots = 0;
  {
    catalog::Transaction reads(cat, Mode::read);  // one read snapshot, few commits of marks
    roots = marker.mark_new_roots();
    reads.commit();
  }
  if (o.after_mark) o.after_mark();

  // 2. Sweep in batches, each marking roots committed meanwhile first.
  say("gc: sweeping the index");
  uint64_t in_flight = 0;
  auto pin_in_flight = [&] {
    // Uploads in flight pin what was added since the oldest of them began.
    auto uploads = cat.uploads_in_flight(now - o.session_timeout_ns);
    in_flight = static_cast<uint64_t>(uploads.count);
    if (in_flight) cutoff = std::min(cutoff, uploads.oldest_start);
  };
  uint64_t scanned = 0, unreferenced = 0, pinned = 0, deleted = 0, deleted_bytes = 0;
  std::optional<Digest> last;
  for (bool more = true; more;) {
    catalog::Transaction tx(cat, o.dry_run ? Mode::read : Mode::write);
    roots += marker.mark_new_roots();
    pin_in_flight();
    auto page = marker.marks().sweep_candidates(last, k_sweep_batch);
    std::vector<Digest> drop;
    for (const auto& c : page) {
      last = c.id;
      if (c.live) continue;
      unreferenced++;
      if (c.added_at >= cutoff) {
        pinned++;
        continue;
      }
      deleted++;
      deleted_bytes += uint64_t(c.stored) + k_record_header;
      drop.push_back(c.id);
    }
    if (!o.dry_run) cat.chunks().delete_chunks(drop);
    scanned += page.size();
    more = page.size() == k_sweep_batch;
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
    catalog::Transaction reads(cat, Mode::read);
    for (const auto& u : cat.pack_usage()) {
      PackUse p;
      p.id = u.id;
      p.name = u.name;
      p.size = u.size;
      p.idle = u.sealed || u.written_at < cutoff;
      p.read_only = u.read_only;
      p.retired_at = u.retired_at;
      p.live_chunks = u.live_chunks;
      p.live_bytes = u.live_stored + u.live_chunks * k_record_header;
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
    auto live = cat.chunks().chunks_in_pack(p.id);
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
    catalog::Transaction tx(cat);
    for (size_t i = 0; i < live.size(); ++i) cat.chunks().move_chunk(live[i].first, live[i].second, w->pack, base + at[i]);
    if (w) cat.set_pack_size(w->pack, w->size, now);
    // Retire only if no writer added records meanwhile (its size would differ).
    bool took = cat.retire_pack(p.id, p.size, now);
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
    for (const auto& p : cat.packs()) {
      if (!p.retired_at) continue;
      if (p.retired_at > cutoff) {
        awaiting++;
        continue;
      }
      gone.push_back(p);
    }
    for (const auto& p : gone) {
      // The check (never true: a retired pack gains no records) and the delete in one
      // write transaction.
      catalog::Transaction tx(cat);
      if (cat.chunks().pack_chunk_count(p.id) != 0) continue;
      repo.pack_volume(p).remove(p.name);  // gone already (a GC killed after this) is fine
      cat.delete_pack(p.id);
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
