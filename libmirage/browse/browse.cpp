#include "libmirage/browse/browse.hpp"

#include <fnmatch.h>
#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <unordered_map>

#include "libmirage/store/record.hpp"
#include "libmirage/util/clock.hpp"
#include "libmirage/util/error.hpp"
#include "libmirage/util/fd.hpp"

namespace mirage::browse {

using nlohmann::json;
using tree::Kind;
using util::Digest;

std::string permissions(const tree::Entry& e) {
  static constexpr char k_types[] = "?-dlcbps";
  std::string s(10, '-');
  s[0] = k_types[static_cast<size_t>(e.kind)];
  const char* rwx = "rwxrwxrwx";
  for (int i = 0; i < 9; ++i)
    if (e.mode & (0400u >> i)) s[static_cast<size_t>(i) + 1] = rwx[i];
  auto special = [&](size_t at, uint32_t bit, char with_x, char without_x) {
    if (e.mode & bit) s[at] = s[at] == '-' ? without_x : with_x;
  };
  special(3, 04000, 's', 'S');
  special(6, 02000, 's', 'S');
  special(9, 01000, 't', 'T');
  return s;
}

void to_json(json& j, const Item& item) {
  const auto& e = item.entry;
  j = {{"path", item.path},
       {"name", item.path == "/" ? "/" : tree::base_name(item.path)},
       {"type", tree::kind_name(e.kind)},
       {"mode", e.mode},
       {"permissions", permissions(e)},
       {"uid", e.uid},
       {"gid", e.gid},
       {"size", e.size},
       {"mtime", util::rfc3339(e.mtime_ns)},
       {"mtime_ns", e.mtime_ns}};
  if (e.kind == Kind::symlink) j["target"] = e.target;
  if (e.kind == Kind::chardev || e.kind == Kind::blockdev) j["rdev"] = e.rdev;
  if (!e.link_group.empty()) j["link_group"] = e.link_group;
  if (!e.xattrs.empty()) {
    json names = json::array();
    for (const auto& x : e.xattrs) names.push_back(x.name);
    j["xattrs"] = names;
  }
}

namespace {

/// A JSON string of `s`: plain printable ASCII as it is, anything else as nlohmann
/// escapes it (control bytes, quotes, backslashes, UTF-8, invalid bytes replaced).
void append_string(std::string& out, std::string_view s) {
  bool plain = std::all_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u >= 0x20 && u < 0x7f && c != '"' && c != '\\';
  });
  if (!plain) {
    out += json(s).dump(-1, ' ', false, json::error_handler_t::replace);
    return;
  }
  out += '"';
  out += s;
  out += '"';
}

template <typename Int>
void append_number(std::string& out, Int n) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, n);
  out.append(buf, end);
}

/// One `"key":` and its value, a comma before all but the first.
struct JsonLine {
  std::string& out;
  bool first = true;
  void key(std::string_view k) {
    out += first ? "{\"" : ",\"";
    first = false;
    out += k;
    out += "\":";
  }
  void str(std::string_view k, std::string_view v) {
    key(k);
    append_string(out, v);
  }
  template <typename Int>
  void num(std::string_view k, Int v) {
    key(k);
    append_number(out, v);
  }
};

}  // namespace

void append_json_line(std::string& out, const Item& item) {
  // The keys in the order nlohmann's object (a std::map) dumps them.
  const auto& e = item.entry;
  JsonLine j{out};
  j.num("gid", e.gid);
  if (!e.link_group.empty()) j.str("link_group", e.link_group);
  j.num("mode", e.mode);
  j.str("mtime", util::rfc3339(e.mtime_ns));
  j.num("mtime_ns", e.mtime_ns);
  j.str("name", item.path == "/" ? "/" : tree::base_name(item.path));
  j.str("path", item.path);
  j.str("permissions", permissions(e));
  if (e.kind == Kind::chardev || e.kind == Kind::blockdev) j.num("rdev", e.rdev);
  j.num("size", e.size);
  if (e.kind == Kind::symlink) j.str("target", e.target);
  j.str("type", tree::kind_name(e.kind));
  j.num("uid", e.uid);
  if (!e.xattrs.empty()) {
    j.key("xattrs");
    for (size_t i = 0; i < e.xattrs.size(); ++i) {
      out += i ? ',' : '[';
      append_string(out, e.xattrs[i].name);
    }
    out += ']';
  }
  out += "}\n";
}

namespace {

/// Fetches a directory, naming its path when that fails (the kind kept).
tree::Tree read_dir(ObjectSource& source, const tree::Entry& dir, const std::string& path) {
  try {
    return source.tree(dir.subtree);
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::unavailable) throw;
    throw Error(e.kind(), "read directory " + path + ": " + e.what());
  }
}

}  // namespace

tree::Entry resolve(ObjectSource& source, const tree::Entry& root, std::string_view path) {
  tree::Entry cur = root;
  std::string at = "/";
  for (const auto& part : tree::split_path(path)) {
    if (cur.kind == Kind::symlink)
      throw Error(ErrorKind::not_found, "path " + std::string(path) + ": " + at + " is a symlink to " + cur.target +
                                            " (links in a path are not followed)");
    if (cur.kind != Kind::dir)
      throw Error(ErrorKind::not_found, "path " + std::string(path) + ": " + at + " is not a directory");
    tree::Tree t = read_dir(source, cur, at);
    const tree::Entry* e = t.find(part);
    at = tree::child_path(at, part);
    if (!e) throw Error(ErrorKind::not_found, "path " + std::string(path) + ": not in the snapshot");
    cur = *e;
  }
  return cur;
}

namespace {

void list_below(ObjectSource& source, const tree::Tree& dir, const std::string& path, bool recursive,
                const std::function<void(const Item&)>& each) {
  // The subdirectories of this one in one request, then each in name order.
  std::unordered_map<Digest, tree::Tree, util::DigestHash> subdirs;
  if (recursive) {
    std::vector<Digest> ids;
    for (const auto& e : dir.entries)
      if (e.kind == Kind::dir) ids.push_back(e.subtree);
    if (!ids.empty()) {
      try {
        subdirs = source.trees(ids);
      } catch (const Error& e) {
        if (e.kind() == ErrorKind::unavailable) throw;
        throw Error(e.kind(), "read the directories in " + path + ": " + e.what());
      }
    }
  }
  for (const auto& e : dir.entries) {
    Item item{tree::child_path(path, e.name), e};
    each(item);
    if (recursive && e.kind == Kind::dir) list_below(source, subdirs.at(e.subtree), item.path, recursive, each);
  }
}

}  // namespace

void list(ObjectSource& source, const tree::Entry& root, std::string_view path, bool recursive,
          const std::function<void(const Item&)>& each) {
  tree::Entry at = resolve(source, root, path);
  std::string shown = "/";
  for (const auto& part : tree::split_path(path)) shown = tree::child_path(shown, part);
  if (at.kind != Kind::dir) {
    each({shown, at});
    return;
  }
  list_below(source, read_dir(source, at, shown), shown, recursive, each);
}

// ---- find ----

void to_json(json& j, const Found& f) {
  to_json(j, Item{f.path, f.entry});
  j["snapshots"] = f.snapshots;
  j["first_seen"] = util::rfc3339(f.first_ns);
  j["last_seen"] = util::rfc3339(f.last_ns);
}

namespace {

/// What find keeps of a directory: its subdirectories and its matching entries.
struct DirMatches {
  std::vector<std::pair<std::string, Digest>> subdirs;
  std::vector<tree::Entry> matches;
};

class Finder {
 public:
  Finder(ObjectSource& source, const FindOptions& options) : m_source(source), m_options(options) {
    for (const auto& p : options.patterns) {
      if (p.empty()) throw Error(ErrorKind::usage, "find: an empty pattern");
      if (p.find('/') == std::string::npos)
        m_names.push_back(p);
      else
        m_paths.push_back(p.front() == '/' ? p : "/" + p);
    }
    if (m_names.empty() && m_paths.empty()) throw Error(ErrorKind::usage, "find: no pattern");
  }

  std::vector<Found> run(const std::vector<SnapshotRef>& snapshots) {
    // Every distinct directory reachable from the snapshots, a level per request.
    std::vector<std::pair<Digest, std::string>> level;
    for (const auto& s : snapshots)
      if (s.root.kind == Kind::dir) level.push_back({s.root.subtree, "/"});
    while (!level.empty()) level = read_level(level);
    for (const auto& s : snapshots)
      if (s.root.kind == Kind::dir) collect(s, s.root.subtree, "/");
    std::vector<Found> out;
    out.reserve(m_found.size());
    for (auto& [key, f] : m_found) out.push_back(std::move(f));
    std::stable_sort(out.begin(), out.end(), [](const Found& a, const Found& b) {
      return a.path != b.path ? a.path < b.path : a.first_ns < b.first_ns;
    });
    return out;
  }

 private:
  bool matches(const tree::Entry& e, const std::string& path) const {
    if (m_options.newer_ns && e.mtime_ns < *m_options.newer_ns) return false;
    if (m_options.older_ns && e.mtime_ns > *m_options.older_ns) return false;
    for (const auto& p : m_names)
      if (::fnmatch(p.c_str(), e.name.c_str(), 0) == 0) return true;
    for (const auto& p : m_paths)
      if (::fnmatch(p.c_str(), path.c_str(), FNM_PATHNAME) == 0) return true;
    return false;
  }

  /// Reads the directories of one level not read yet; returns the next level. A path
  /// pattern needs each directory's path: a tree reached by two paths is matched once
  /// per path then (name patterns, the usual case, once per tree).
  std::vector<std::pair<Digest, std::string>> read_level(const std::vector<std::pair<Digest, std::string>>& level) {
    std::vector<Digest> ids;
    std::vector<std::pair<Digest, std::string>> todo;
    for (const auto& [id, path] : level) {
      if (!m_dirs.emplace(key(id, path), DirMatches{}).second) continue;
      todo.push_back({id, path});
      ids.push_back(id);
    }
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    if (ids.empty()) return {};
    auto trees = m_source.trees(ids);
    std::vector<std::pair<Digest, std::string>> next;
    for (const auto& [id, path] : todo) {
      auto& dm = m_dirs[key(id, path)];
      for (const auto& e : trees.at(id).entries) {
        std::string child = m_paths.empty() ? std::string() : tree::child_path(path, e.name);
        if (matches(e, m_paths.empty() ? e.name : child)) dm.matches.push_back(e);
        if (e.kind == Kind::dir) {
          dm.subdirs.push_back({e.name, e.subtree});
          next.push_back({e.subtree, child});
        }
      }
    }
    return next;
  }

  std::string key(const Digest& id, const std::string& path) const {
    return m_paths.empty() ? id.hex() : id.hex() + path;
  }

  /// Whether anything under directory `id` (reached at `path`) matches, memoized.
  bool any_below(const Digest& id, const std::string& path) {
    std::string k = key(id, path);
    if (auto it = m_any.find(k); it != m_any.end()) return it->second;
    const auto& dm = m_dirs.at(k);
    bool any = !dm.matches.empty();
    for (const auto& [name, sub] : dm.subdirs)
      if (any_below(sub, m_paths.empty() ? std::string() : tree::child_path(path, name))) any = true;
    m_any[k] = any;
    return any;
  }

  void collect(const SnapshotRef& snap, const Digest& id, const std::string& path) {
    std::string k_path = m_paths.empty() ? std::string() : path;
    if (!any_below(id, k_path)) return;
    const auto& dm = m_dirs.at(key(id, k_path));
    for (const auto& e : dm.matches) {
      std::string p = tree::child_path(path, e.name);
      auto encoded = tree::encode_entry(e);
      std::string version(encoded.begin(), encoded.end());
      auto [it, added] = m_found.try_emplace(p + '\0' + version, Found{p, e, {}, snap.time_ns, snap.time_ns});
      auto& f = it->second;
      if (!f.snapshots.empty() && f.snapshots.back() == snap.id) continue;  // a path is one entry per snapshot
      f.snapshots.push_back(snap.id);
      f.first_ns = std::min(f.first_ns, snap.time_ns);
      f.last_ns = std::max(f.last_ns, snap.time_ns);
    }
    for (const auto& [name, sub] : dm.subdirs) collect(snap, sub, tree::child_path(path, name));
  }

  ObjectSource& m_source;
  const FindOptions& m_options;
  std::vector<std::string> m_names, m_paths;
  std::unordered_map<std::string, DirMatches> m_dirs;
  std::unordered_map<std::string, bool> m_any;
  std::map<std::string, Found> m_found;
};

}  // namespace

std::vector<Found> find(ObjectSource& source, const std::vector<SnapshotRef>& snapshots, const FindOptions& options) {
  return Finder(source, options).run(snapshots);
}

// ---- diff ----

std::string_view change_name(Change change) {
  switch (change) {
    case Change::added: return "added";
    case Change::removed: return "removed";
    case Change::modified: return "modified";
    case Change::metadata: return "metadata";
    case Change::type: return "type";
  }
  return "";
}

void to_json(json& j, const DiffItem& d) {
  const tree::Entry& e = d.after ? *d.after : *d.before;
  j = {{"path", d.path}, {"change", change_name(d.change)}, {"type", tree::kind_name(e.kind)}};
  if (d.before) j["size_before"] = d.before->size;
  if (d.after) j["size_after"] = d.after->size;
}

void to_json(json& j, const DiffSummary& s) {
  j = {{"added", {{"entries", s.added}, {"bytes", s.added_bytes}}},
       {"removed", {{"entries", s.removed}, {"bytes", s.removed_bytes}}},
       {"modified", {{"entries", s.modified}, {"bytes_before", s.modified_bytes_before}, {"bytes_after", s.modified_bytes_after}}},
       {"metadata", {{"entries", s.metadata}}},
       {"type", {{"entries", s.type}}},
       {"trees_read", s.trees_read}};
}

namespace {

bool same_metadata(const tree::Entry& a, const tree::Entry& b) {
  return a.mode == b.mode && a.uid == b.uid && a.gid == b.gid && a.mtime_ns == b.mtime_ns && a.xattrs == b.xattrs &&
         a.link_group == b.link_group && a.sparse == b.sparse;
}

bool same_content(const tree::Entry& a, const tree::Entry& b) {
  switch (a.kind) {
    case Kind::file: return a.size == b.size && a.chunks == b.chunks;
    case Kind::symlink: return a.target == b.target;
    case Kind::chardev:
    case Kind::blockdev: return a.rdev == b.rdev;
    default: return true;
  }
}

/// A level-by-level walk of both snapshots: each level's directories in one request,
/// a pair with equal ids never read.
class Differ {
 public:
  explicit Differ(ObjectSource& source) : m_source(source) {}

  DiffResult run(const std::string& path, const tree::Entry* a, const tree::Entry* b) {
    compare(path, a, b);
    while (!m_level.empty()) next_level();
    std::sort(m_out.changes.begin(), m_out.changes.end(),
              [](const DiffItem& x, const DiffItem& y) { return x.path < y.path; });
    return std::move(m_out);
  }

 private:
  struct Pending {
    std::string path;
    std::optional<Digest> before, after;  ///< absent: that side has no directory here
  };

  void emit(const std::string& path, Change change, const tree::Entry* a, const tree::Entry* b) {
    DiffItem d{path, change, {}, {}};
    if (a) d.before = *a;
    if (b) d.after = *b;
    auto& s = m_out.summary;
    switch (change) {
      case Change::added: s.added++, s.added_bytes += b->size; break;
      case Change::removed: s.removed++, s.removed_bytes += a->size; break;
      case Change::modified:
        s.modified++, s.modified_bytes_before += a->size, s.modified_bytes_after += b->size;
        break;
      case Change::metadata: s.metadata++; break;
      case Change::type:
        s.type++, s.removed_bytes += a->size, s.added_bytes += b->size;
        break;
    }
    m_out.changes.push_back(std::move(d));
  }

  /// Compares one path's two entries (either may be absent) and queues what must be read.
  void compare(const std::string& path, const tree::Entry* a, const tree::Entry* b) {
    if (!a && !b) return;
    if (!a || !b || a->kind != b->kind) {
      if (a && b)
        emit(path, Change::type, a, b);
      else if (b)
        emit(path, Change::added, nullptr, b);
      else
        emit(path, Change::removed, a, nullptr);
      Pending p{path, {}, {}};
      if (a && a->kind == Kind::dir) p.before = a->subtree;
      if (b && b->kind == Kind::dir) p.after = b->subtree;
      if (p.before || p.after) m_level.push_back(std::move(p));
      return;
    }
    if (a->kind == Kind::dir) {
      bool contents_same = a->subtree == b->subtree;
      tree::Entry a_meta = *a;
      if (!contents_same) a_meta.mtime_ns = b->mtime_ns;  // a changed directory's mtime is no news
      if (!same_metadata(a_meta, *b)) emit(path, Change::metadata, a, b);
      if (!contents_same) m_level.push_back({path, a->subtree, b->subtree});
      return;
    }
    if (!same_content(*a, *b))
      emit(path, Change::modified, a, b);
    else if (!same_metadata(*a, *b))
      emit(path, Change::metadata, a, b);
  }

  void next_level() {
    std::vector<Digest> ids;
    for (const auto& p : m_level) {
      if (p.before) ids.push_back(*p.before);
      if (p.after) ids.push_back(*p.after);
    }
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    auto trees = m_source.trees(ids);
    m_out.summary.trees_read += ids.size();
    auto level = std::move(m_level);
    m_level.clear();
    static const tree::Tree k_empty;
    for (const auto& p : level) {
      const auto& ta = p.before ? trees.at(*p.before) : k_empty;
      const auto& tb = p.after ? trees.at(*p.after) : k_empty;
      // A merge of two name-sorted lists.
      size_t i = 0, k = 0;
      while (i < ta.entries.size() || k < tb.entries.size()) {
        const tree::Entry* a = i < ta.entries.size() ? &ta.entries[i] : nullptr;
        const tree::Entry* b = k < tb.entries.size() ? &tb.entries[k] : nullptr;
        if (a && b && a->name != b->name) (a->name < b->name ? b : a) = nullptr;
        if (a) ++i;
        if (b) ++k;
        compare(tree::child_path(p.path, a ? a->name : b->name), a, b);
      }
    }
  }

  ObjectSource& m_source;
  std::vector<Pending> m_level;
  DiffResult m_out;
};

/// Resolves `path` in a snapshot, absent when the snapshot lacks it.
std::optional<tree::Entry> resolve_or_none(ObjectSource& source, const tree::Entry& root, std::string_view path) {
  try {
    return resolve(source, root, path);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::not_found) throw;
    return std::nullopt;
  }
}

}  // namespace

DiffResult diff(ObjectSource& source, const tree::Entry& before, const tree::Entry& after, std::string_view path) {
  std::string shown = "/";
  for (const auto& part : tree::split_path(path)) shown = tree::child_path(shown, part);
  auto a = resolve_or_none(source, before, shown), b = resolve_or_none(source, after, shown);
  if (!a && !b) throw Error(ErrorKind::not_found, "path " + shown + ": in neither snapshot");
  return Differ(source).run(shown, a ? &*a : nullptr, b ? &*b : nullptr);
}

// ---- dump ----

namespace {

constexpr uint64_t k_window_bytes = 32u << 20;
constexpr size_t k_queue_entries = 2048;


/// Writes entries in order, their file contents fetched in windows of about 32 MiB of
/// chunks: a window is fetched when the writer reaches a chunk it lacks, reading ahead
/// over the files queued after it.
class Dumper {
 public:
  /// `archive` null: raw bytes of one file to `fd`.
  Dumper(ObjectSource& source, int fd, util::ArchiveWriter* archive)
      : m_source(source), m_fd(fd), m_archive(archive) {}

  void add(std::string name, const tree::Entry& e, std::string path) {
    m_queue.push_back({std::move(name), e, std::move(path)});
    m_queued_bytes += e.size;
    if (m_queue.size() >= k_queue_entries || m_queued_bytes >= k_window_bytes) flush();
  }

  void walk(const tree::Entry& dir, const std::string& name, const std::string& path) {
    tree::Tree t = read_dir(m_source, dir, path);
    for (const auto& e : t.entries) {
      std::string child = name.empty() ? e.name : name + "/" + e.name;
      std::string child_path = tree::child_path(path, e.name);
      add(child, e, child_path);
      if (e.kind == Kind::dir) walk(e, child, child_path);
    }
  }

  DumpStats finish() {
    flush();
    return std::move(m_stats);
  }

 private:
  struct Queued {
    std::string name;  ///< the member's name in the archive
    tree::Entry entry;
    std::string path;  ///< in the snapshot, for messages
  };

  void flush() {
    for (m_at = 0; m_at < m_queue.size(); ++m_at) write(m_queue[m_at]);
    m_queue.clear();
    m_queued_bytes = 0;
    m_window.clear();
    m_blob.clear();
  }

  void write(const Queued& q) {
    const auto& e = q.entry;
    if (m_archive && e.kind == Kind::socket) {
      m_stats.skipped.push_back(q.path);
      return;
    }
    m_stats.entries++;
    if (m_archive) {
      util::ArchiveMember m{q.name, tree::type_bits(e.kind), e.mode, e.uid, e.gid, e.mtime_ns, e.size, e.rdev, {}, {}, {}};
      if (e.kind == Kind::symlink) m.symlink = e.target;
      for (const auto& x : e.xattrs) m.xattrs.push_back({x.name, x.value});
      if (!e.link_group.empty() && e.kind != Kind::dir && m_archive->has_hardlinks()) {
        auto [it, first] = m_groups.emplace(e.link_group, q.name);
        if (!first) {
          m.hardlink = it->second;
          m.size = 0;
          m_archive->add(m);
          return;
        }
      }
      if (e.kind != Kind::file) m.size = 0;
      m_archive->add(m);
    }
    if (e.kind != Kind::file) return;
    std::vector<uint8_t> plain;
    for (size_t c = 0; c < e.chunks.size(); ++c) {
      const auto& ref = e.chunks[c];
      auto it = m_window.find(ref.id);
      if (it == m_window.end()) {
        fetch_window(c);
        it = m_window.find(ref.id);
        if (it == m_window.end())
          throw Error(ErrorKind::integrity, "dump " + q.path + ": chunk " + ref.id.hex() + " is missing from the store");
      }
      if (it->second.raw_size != ref.size)
        throw Error(ErrorKind::integrity, "dump " + q.path + ": chunk " + ref.id.hex() + " has the wrong size");
      plain.resize(ref.size);
      store::open_record_into(it->second, plain, "dump " + q.path);
      if (m_archive)
        m_archive->data(plain);
      else
        util::write_all(m_fd, plain, q.path);  // "write PATH: ..."
      m_stats.bytes += plain.size();
    }
  }

  /// Fetches the chunks from chunk `c` of the entry being written on, up to the window.
  void fetch_window(size_t c) {
    std::vector<Digest> ids;
    uint64_t bytes = 0;
    for (size_t i = m_at; i < m_queue.size() && bytes < k_window_bytes; ++i) {
      const auto& chunks = m_queue[i].entry.chunks;
      if (m_queue[i].entry.kind != Kind::file) continue;
      for (size_t k = i == m_at ? c : 0; k < chunks.size() && bytes < k_window_bytes; ++k) {
        ids.push_back(chunks[k].id);
        bytes += chunks[k].size;
      }
    }
    m_window.clear();
    m_blob = m_source.records(ids);
    store::RecordReader reader(m_blob, "dump");
    while (auto rec = reader.next()) m_window.emplace(rec->id, *rec);
  }

  ObjectSource& m_source;
  int m_fd;
  util::ArchiveWriter* m_archive;
  std::vector<Queued> m_queue;
  uint64_t m_queued_bytes = 0;
  size_t m_at = 0;
  std::vector<uint8_t> m_blob;
  std::unordered_map<Digest, store::Record, util::DigestHash> m_window;
  std::map<std::string, std::string> m_groups;  ///< hardlink group -> its first member's name
  DumpStats m_stats;
};

}  // namespace

DumpStats dump_file(ObjectSource& source, const tree::Entry& entry, const std::string& path, int fd) {
  if (entry.kind != Kind::file)
    throw Error(ErrorKind::usage, "dump " + path + ": a " + std::string(tree::kind_name(entry.kind)) +
                                      ", not a file (give --archive tar|zip)");
  Dumper d(source, fd, nullptr);
  d.add(tree::base_name(path), entry, path);
  return d.finish();
}

DumpStats dump_archive(ObjectSource& source, const tree::Entry& entry, const std::string& path, int fd,
                       util::ArchiveFormat format) {
  util::ArchiveWriter archive(fd, format, "dump " + path);
  Dumper d(source, fd, &archive);
  std::string name = path == "/" ? std::string() : tree::base_name(path);
  if (!name.empty()) d.add(name, entry, path);
  if (entry.kind == Kind::dir) d.walk(entry, name, path);
  auto stats = d.finish();
  archive.finish();
  return stats;
}

}  // namespace mirage::browse
