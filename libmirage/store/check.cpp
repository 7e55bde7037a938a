// mirage check: the store checked against its catalog, in four passes (packs, pack files
// the catalog does not know and the newest commit, the index, the snapshots' trees).
#include <algorithm>
#include <array>
#include <filesystem>
#include <map>
#include <set>
#include <unordered_set>

#include "libmirage/store/record.hpp"
#include "libmirage/store/repository.hpp"
#include "libmirage/tree/tree.hpp"
#include "libmirage/util/error.hpp"
#include "libmirage/util/fd.hpp"

namespace mirage::store {

namespace fs = std::filesystem;

class RepositoryChecker {
 public:
  RepositoryChecker(Repository& repo, bool read_data, const std::function<void(uint64_t, uint64_t)>& progress)
      : m_repo(repo), m_cat(repo.catalog()), m_read_data(read_data), m_progress(progress) {}

  CheckReport run() {
    check_packs();
    note_unknown_packs();
    check_last_commit();
    check_index();
    check_snapshots();
    return std::move(m_report);
  }

 private:
  void problem(std::string what, std::string name, std::string message) {
    m_report.problems.push_back({std::move(what), std::move(name), std::move(message)});
  }

  /// Packs: present, header intact, at least as long as the index says.
  void check_packs() {
    for (const auto& pack : m_cat.packs()) {
      m_packs[pack.id] = pack;
      m_report.packs++;
      Volume& vol = m_repo.pack_volume(pack);
      std::unique_ptr<PackReader> reader;
      try {
        reader = vol.open_pack(pack.name);
      } catch (const Error& e) {
        if (e.kind() != ErrorKind::not_found) {
          problem("pack", pack.name, "bad or unreadable header");
          m_bad_packs.insert(pack.id);
          continue;
        }
        // A retired pack holds nothing live: a GC that died between unlinking its file and
        // deleting its row leaves it so, and the next GC deletes the row. A chunk still
        // indexed in it is reported below (beyond the end of its pack, or unreadable).
        if (auto now = m_cat.pack(pack.id); now && now->retired_at != 0) continue;
        problem("pack", pack.name, "missing: " + vol.location(pack.name));
        m_bad_packs.insert(pack.id);
        continue;
      }
      uint64_t size = 0;
      std::array<uint8_t, k_pack_magic.size()> magic{};
      bool header_ok = false;
      try {
        size = reader->size();
        header_ok = reader->read_some(0, magic) == magic.size() &&
                    std::equal(magic.begin(), magic.end(), k_pack_magic.begin());
      } catch (const Error&) {  // unreadable: reported as a bad header
      }
      m_file_sizes[pack.id] = size;
      if (size < pack.size)
        problem("pack", pack.name,
                "truncated: " + std::to_string(size) + " bytes, the index covers " + std::to_string(pack.size));
      if (!header_ok) {
        problem("pack", pack.name, "bad or unreadable header");
        m_bad_packs.insert(pack.id);
      }
    }
  }

  /// Pack files the catalog does not know (a lost catalog row, or a lost catalog).
  void note_unknown_packs() {
    std::set<std::string> known;
    for (const auto& [id, pack] : m_packs) known.insert(pack.name);
    for (const auto& v : m_repo.volumes())
      for (const auto& file : m_repo.volume(v.id).list()) {
        if (!known.count(file.name) && m_report.notes.size() < 1000)
          m_report.notes.push_back({"pack", file.name,
                                    "not in the catalog: " + file.location + " (mirage check --repair indexes what it holds)"});
      }
  }

  /// The newest commit recorded beside the catalog is in it (a lost WAL drops it).
  void check_last_commit() {
    std::error_code ec;
    fs::path last = m_repo.m_data / "last-commit";
    if (!fs::exists(last, ec)) return;
    auto j = nlohmann::json::parse(util::read_file(last), nullptr, false);
    std::string id = j.is_object() ? j.value("snapshot_id", "") : "";
    std::string device = j.is_object() ? j.value("device_id", "") : "";
    if (id.empty()) {
      problem("catalog", "last-commit", "unreadable: " + last.string());
    } else if (m_cat.device(device)) {
      bool found = false;
      for (const auto& s : m_cat.snapshots(device)) found = found || s.id == id;
      if (!found)
        problem("snapshot", id, "the newest commit (device " + device +
                                    ") is not in the catalog: its last transactions were lost "
                                    "(a damaged or deleted catalog.db-wal, or an older catalog.db put back)");
    }
  }

  /// Index entries: inside their pack; with read_data, decoded and re-hashed.
  void check_index() {
    uint64_t total = m_cat.chunks().chunk_count(), done = 0;
    std::vector<uint8_t> buf;
    m_cat.chunks().for_each_chunk([&](const Digest& id, const catalog::ChunkLocation& loc) {
      m_report.chunks++;
      if (m_progress && (++done % 1024 == 0)) m_progress(done, total);
      auto it = m_packs.find(loc.pack);
      if (it == m_packs.end()) {
        problem("chunk", id.hex(), "indexed in pack " + std::to_string(loc.pack) + " which does not exist");
        return;
      }
      if (m_bad_packs.count(loc.pack)) {
        problem("chunk", id.hex(), "in damaged pack " + it->second.name);
        return;
      }
      if (!m_read_data) {
        if (loc.offset + k_record_header + loc.stored > m_file_sizes[loc.pack])
          problem("chunk", id.hex(), "beyond the end of pack " + it->second.name + " (truncated)");
        return;
      }
      try {
        buf.clear();
        m_repo.read_record_at(id, loc, buf);
        m_report.bytes_read += buf.size();
        open_record(parse_record(buf, "pack " + it->second.name), "pack " + it->second.name);
      } catch (const Error& e) {
        problem("chunk", id.hex(), e.what());
      }
    });
    if (m_progress) m_progress(total, total);
  }

  /// Snapshots: every tree reachable and decodable, every referenced chunk indexed.
  void check_snapshots() {
    catalog::Transaction reads(m_cat, catalog::Transaction::Mode::read);
    std::unordered_set<Digest, util::DigestHash> trees_seen;
    for (const auto& snap : m_cat.all_snapshots()) {
      m_report.snapshots++;
      std::vector<std::pair<Digest, std::string>> stack{{snap.tree, "/"}};
      while (!stack.empty()) {
        auto [tree_id, path] = stack.back();
        stack.pop_back();
        if (!trees_seen.insert(tree_id).second) continue;
        m_report.trees++;
        // A piece at a time: a split directory is never held whole.
        try {
          tree::for_each_piece(
              tree_id, [&](const Digest& d) { return m_repo.read_plain(d); }, "tree " + tree_id.hex(),
              [&](const Digest&, const tree::Tree& piece) {
                for (const auto& e : piece.entries) {
                  std::string child = tree::child_path(path, e.name);
                  if (e.kind == tree::Kind::dir) stack.push_back({e.subtree, child});
                  note_placeholder(snap, e, child);
                  for (const auto& c : e.chunks)
                    if (!m_cat.find_chunk(c.id))
                      problem("snapshot", snap.id,
                              "device " + snap.device + " file " + child + ": chunk " + c.id.hex() + " is missing");
                }
              });
        } catch (const Error& e) {
          problem("snapshot", snap.id, "device " + snap.device + " path " + path + ": " + e.what());
          continue;
        }
      }
    }
  }

  /// A file stored with the placeholder mark (tree.hpp): a sync from before the scanner
  /// left unfilled placeholders out stored its hole as the file. Not damage to the
  /// store (check still passes), but that file's bytes in this snapshot are zeros, not
  /// the file's: a note naming it, to restore it from another snapshot.
  void note_placeholder(const catalog::Snapshot& snap, const tree::Entry& e, const std::string& path) {
    if (e.kind != tree::Kind::file || m_report.notes.size() >= 1000) return;
    for (const auto& x : e.xattrs)
      if (x.name == tree::k_placeholder_xattr) {
        m_report.notes.push_back({"snapshot", snap.id,
                                  "device " + snap.device + " file " + path +
                                      ": stored while it was an unfilled placeholder of a streaming restore: its " +
                                      std::to_string(e.size) + " bytes here are zeros, not the file's (restore it "
                                      "from another snapshot; a restore of this one marks it a placeholder again)"});
        return;
      }
  }

  Repository& m_repo;
  catalog::Catalog& m_cat;
  const bool m_read_data;
  const std::function<void(uint64_t, uint64_t)>& m_progress;
  CheckReport m_report;
  std::map<int64_t, catalog::Pack> m_packs;
  std::map<int64_t, uint64_t> m_file_sizes;
  std::set<int64_t> m_bad_packs;
};

CheckReport Repository::check(bool read_data, const std::function<void(uint64_t, uint64_t)>& progress) {
  return RepositoryChecker(*this, read_data, progress).run();
}

}  // namespace mirage::store
