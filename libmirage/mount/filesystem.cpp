#include "libmirage/mount/filesystem.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <future>
#include <list>
#include <map>

#include "libmirage/store/record.hpp"
#include "libmirage/util/clock.hpp"
#include "libmirage/util/digest.hpp"
#include "libmirage/util/error.hpp"

namespace mirage::mount {

using tree::Kind;
using util::Digest;

namespace {

/// A least-recently-used map of shared values, bounded by the sum of their costs. The
/// newest item is kept even when it alone is over the bound.
template <class T>
class Lru {
 public:
  explicit Lru(uint64_t limit) : m_limit(limit) {}

  std::shared_ptr<const T> get(const Digest& id) {
    auto it = m_index.find(id);
    if (it == m_index.end()) {
      ++misses;
      return nullptr;
    }
    ++hits;
    m_order.splice(m_order.begin(), m_order, it->second);
    return it->second->value;
  }

  void put(const Digest& id, std::shared_ptr<const T> value, uint64_t cost) {
    if (auto it = m_index.find(id); it != m_index.end()) return;
    m_order.push_front({id, std::move(value), cost});
    m_index.emplace(id, m_order.begin());
    bytes += cost;
    while (bytes > m_limit && m_order.size() > 1) {
      bytes -= m_order.back().cost;
      m_index.erase(m_order.back().id);
      m_order.pop_back();
    }
  }

  bool contains(const Digest& id) const { return m_index.count(id) != 0; }

  uint64_t bytes = 0, hits = 0, misses = 0;

 private:
  struct Item {
    Digest id;
    std::shared_ptr<const T> value;
    uint64_t cost;
  };
  uint64_t m_limit;
  std::list<Item> m_order;
  std::unordered_map<Digest, typename std::list<Item>::iterator, util::DigestHash> m_index;
};

/// What a decoded directory costs in memory, roughly.
uint64_t tree_cost(const tree::Tree& t) {
  uint64_t cost = sizeof(tree::Tree);
  for (const auto& e : t.entries) {
    cost += sizeof(tree::Entry) + e.name.size() + e.target.size() + e.link_group.size() +
            e.chunks.size() * sizeof(tree::ChunkRef);
    for (const auto& x : e.xattrs) cost += sizeof(tree::Xattr) + x.name.size() + x.value.size();
  }
  return cost;
}

}  // namespace

struct Filesystem::Impl {
  struct Node {
    tree::Entry entry;
    int snapshot = -1;  ///< -1: the layout's own directories and links
    std::string path;   ///< in its snapshot, for messages
    uint64_t lookups = 0;
    bool fixed = false;  ///< the layout and the snapshot roots: never dropped
    std::string key;     ///< in `keys`
    std::vector<std::pair<std::string, uint64_t>> children;  ///< a layout directory's, by name
    std::optional<uint64_t> blocks;
  };

  Impl(ObjectSource& s, Options o)
      : source(s), options(std::move(o)), trees(options.tree_cache_bytes), chunks(options.chunk_cache_bytes) {}

  using Counts = std::map<std::string, uint32_t>;  ///< members per hardlink group

  ObjectSource& source;
  std::vector<Snapshot> snapshots;  ///< every one ever listed (a node's index stays valid)
  std::vector<size_t> listed;       ///< those in the last list, oldest first
  Options options;
  std::unordered_map<uint64_t, Node> nodes;
  std::unordered_map<std::string, uint64_t> keys;
  uint64_t next_ino = k_root;
  std::vector<std::shared_ptr<const Counts>> groups;  ///< per snapshot, once counted
  /// Group sizes below each directory object counted so far (shared between snapshots).
  std::unordered_map<Digest, std::shared_ptr<const Counts>, util::DigestHash> link_index;
  // The layout's inodes; a snapshot's root and by-date link by snapshot id.
  uint64_t root_ino = 0, by_date_ino = 0, snaps_ino = 0, latest_ino = 0;
  std::string latest_id;
  std::map<std::string, uint64_t> snap_ino, date_ino;
  std::chrono::steady_clock::time_point last_refresh;
  Lru<tree::Tree> trees;
  Lru<std::vector<uint8_t>> chunks;
  std::map<uint64_t, Digest> zero_ids;  ///< the id of an all-zero chunk, by size
  uint64_t fetches = 0;

  uint64_t add_fixed(tree::Entry entry, int snapshot) {
    uint64_t ino = next_ino++;
    Node& n = nodes[ino];
    n.entry = std::move(entry);
    n.snapshot = snapshot;
    n.path = "/";
    n.fixed = true;
    return ino;
  }

  tree::Entry layout_dir(int64_t time_ns) const {
    tree::Entry e;
    e.kind = Kind::dir;
    e.mode = 0555;
    e.uid = options.uid;
    e.gid = options.gid;
    e.mtime_ns = time_ns;
    return e;
  }

  tree::Entry layout_link(const std::string& target, int64_t time_ns) const {
    tree::Entry e = layout_dir(time_ns);
    e.kind = Kind::symlink;
    e.mode = 0777;
    e.target = target;
    return e;
  }

  void build_layout(std::vector<Snapshot> list) {
    if (options.single) {
      snapshots = std::move(list);
      listed = {0};
      groups.resize(1);
      add_fixed(snapshots.front().root, 0);
      return;
    }
    root_ino = add_fixed(layout_dir(0), -1);
    by_date_ino = add_fixed(layout_dir(0), -1);
    snaps_ino = add_fixed(layout_dir(0), -1);
    relist(list);
    last_refresh = std::chrono::steady_clock::now();
  }

  /// Makes the layout list `list` (oldest first): new snapshots get their nodes, the
  /// listings and `latest` follow. Nodes of snapshots no longer listed stay (the kernel
  /// may still hold them).
  void relist(const std::vector<Snapshot>& list) {
    listed.clear();
    std::vector<std::pair<std::string, uint64_t>> snaps, by_date;
    auto dates = date_names(list);
    for (size_t i = 0; i < list.size(); ++i) {
      const auto& s = list[i];
      auto it = snap_ino.find(s.id);
      if (it == snap_ino.end()) {
        snapshots.push_back(s);
        groups.emplace_back();
        it = snap_ino.emplace(s.id, add_fixed(s.root, static_cast<int>(snapshots.size() - 1))).first;
      }
      listed.push_back(static_cast<size_t>(nodes[it->second].snapshot));
      snaps.emplace_back(s.id, it->second);
      auto link = date_ino.find(dates[i] + '/' + s.id);
      if (link == date_ino.end())
        link = date_ino.emplace(dates[i] + '/' + s.id, add_fixed(layout_link("../snapshots/" + s.id, s.time_ns), -1)).first;
      by_date.emplace_back(dates[i], link->second);
    }
    std::sort(snaps.begin(), snaps.end());
    std::sort(by_date.begin(), by_date.end());
    int64_t newest = list.back().time_ns;
    if (list.back().id != latest_id) {  // a new inode: the kernel's cached target stays right for the old one
      latest_id = list.back().id;
      latest_ino = add_fixed(layout_link("snapshots/" + latest_id, newest), -1);
    }
    nodes[snaps_ino].children = std::move(snaps);
    nodes[by_date_ino].children = std::move(by_date);
    nodes[root_ino].children = {{"by-date", by_date_ino}, {"latest", latest_ino}, {"snapshots", snaps_ino}};
    for (uint64_t dir : {root_ino, by_date_ino, snaps_ino}) nodes[dir].entry.mtime_ns = newest;
  }

  /// Asks for the snapshot list again when it is due (see Options::refresh). Invalidates
  /// Node references.
  void maybe_refresh() {
    if (options.single || !options.refresh) return;
    auto now = std::chrono::steady_clock::now();
    if (now - last_refresh < std::chrono::duration<double>(options.refresh_seconds)) return;
    last_refresh = now;
    collect(true);  // the source is the caller's: no fetch of ours runs meanwhile
    auto list = options.refresh();
    if (!list.empty()) relist(list);
  }

  Node& node(uint64_t ino) {
    auto it = nodes.find(ino);
    if (it == nodes.end()) throw Error(ErrorKind::not_found, "inode " + std::to_string(ino) + " is not known");
    return it->second;
  }

  std::shared_ptr<const tree::Tree> dir_tree(const Node& n) {
    const Digest& id = n.entry.subtree;
    if (auto t = trees.get(id)) return t;
    std::shared_ptr<const tree::Tree> t;
    try {
      t = std::make_shared<const tree::Tree>(source.tree(id));
    } catch (const Error& e) {
      if (e.kind() == ErrorKind::unavailable) throw;
      throw Error(e.kind(), "read directory " + n.path + ": " + e.what());
    }
    trees.put(id, t, tree_cost(*t));
    return t;
  }

  /// The group sizes below the directory object `subtree` (at `path`, for messages),
  /// counted once per object.
  std::shared_ptr<const Counts> counts_below(const Digest& subtree, const std::string& path) {
    if (auto it = link_index.find(subtree); it != link_index.end()) return it->second;
    Node dir;
    dir.entry.subtree = subtree;
    dir.path = path;
    auto t = dir_tree(dir);
    auto counts = std::make_shared<Counts>();
    for (const auto& e : t->entries) {
      if (e.kind == Kind::dir) {
        for (const auto& [group, n] : *counts_below(e.subtree, tree::child_path(path, e.name))) (*counts)[group] += n;
      } else if (!e.link_group.empty()) {
        ++(*counts)[e.link_group];
      }
    }
    static const auto k_none = std::make_shared<const Counts>();  // most directories: one shared empty map
    auto shared = counts->empty() ? k_none : std::shared_ptr<const Counts>(std::move(counts));
    link_index.emplace(subtree, shared);
    return shared;
  }

  /// Members per hardlink group of snapshot `s`.
  uint32_t group_size(int s, const std::string& group) {
    auto& counts = groups[static_cast<size_t>(s)];
    if (!counts) counts = counts_below(snapshots[static_cast<size_t>(s)].root.subtree, "/");
    auto it = counts->find(group);
    return it == counts->end() ? 1 : it->second;
  }

  const Digest& zero_id(uint64_t size) {
    auto it = zero_ids.find(size);
    if (it == zero_ids.end()) it = zero_ids.emplace(size, util::sha256(std::vector<uint8_t>(size))).first;
    return it->second;
  }

  /// A sparse file's blocks are those of its chunks that are not all zeros (which a
  /// restore leaves as holes); another file's are its size.
  uint64_t blocks(Node& n) {
    const auto& e = n.entry;
    if (e.kind != Kind::file) return 0;
    if (!e.sparse) return (e.size + 511) / 512;
    if (!n.blocks) {
      uint64_t b = 0;
      for (const auto& c : e.chunks)
        if (c.size < 4096 || c.id != zero_id(c.size)) b += (c.size + 511) / 512;
      n.blocks = b;
    }
    return *n.blocks;
  }

  struct stat stat_of(uint64_t ino, Node& n) {
    const auto& e = n.entry;
    struct stat st {};
    st.st_ino = ino;
    st.st_mode = tree::type_bits(e.kind) | (e.mode & 07777);
    st.st_nlink = 1;
    if (!e.link_group.empty() && e.kind != Kind::dir && n.snapshot >= 0) st.st_nlink = group_size(n.snapshot, e.link_group);
    st.st_uid = e.uid;
    st.st_gid = e.gid;
    st.st_size = static_cast<off_t>(e.kind == Kind::file ? e.size : e.kind == Kind::symlink ? e.target.size() : 0);
    if (e.kind == Kind::chardev || e.kind == Kind::blockdev) st.st_rdev = static_cast<dev_t>(e.rdev);
    st.st_blksize = 4096;
    st.st_blocks = static_cast<blkcnt_t>(blocks(n));
    struct timespec t {
      static_cast<time_t>(e.mtime_ns / 1000000000), static_cast<long>(e.mtime_ns % 1000000000)
    };
    if (t.tv_nsec < 0) {  // before 1970: the remainder is negative
      t.tv_sec -= 1;
      t.tv_nsec += 1000000000;
    }
    st.st_atim = st.st_mtim = st.st_ctim = t;
    return st;
  }

  uint64_t child(uint64_t parent_ino, const std::string& name) {
    Node& parent = node(parent_ino);
    if (parent.snapshot < 0 || parent.entry.kind != Kind::dir) {
      if (parent.entry.kind != Kind::dir) throw Error(ErrorKind::usage, parent.path + ": not a directory");
      auto it = std::lower_bound(parent.children.begin(), parent.children.end(), std::make_pair(name, uint64_t(0)));
      if (it == parent.children.end() || it->first != name) throw Error(ErrorKind::not_found, name + ": no such entry");
      return it->second;
    }
    auto t = dir_tree(parent);
    const tree::Entry* e = t->find(name);
    if (!e) throw Error(ErrorKind::not_found, tree::child_path(parent.path, name) + ": not in the snapshot");
    int snapshot = parent.snapshot;
    std::string path = tree::child_path(parent.path, name);
    std::string key = key_of(snapshot, path, *e);
    if (auto it = keys.find(key); it != keys.end()) return it->second;
    uint64_t ino = ino_of(key);
    while (nodes.count(ino)) ino = (ino + 1) | k_hashed;  // a collision: the next free number
    Node& n = nodes[ino];
    n.entry = *e;
    n.snapshot = snapshot;
    n.path = std::move(path);
    n.key = key;
    keys.emplace(std::move(key), ino);
    return ino;
  }

  /// What names an entry's inode: its hardlink group, or its path, in its snapshot.
  static std::string key_of(int snapshot, const std::string& path, const tree::Entry& e) {
    return !e.link_group.empty() && e.kind != Kind::dir ? "h" + std::to_string(snapshot) + ":" + e.link_group
                                                        : "p" + std::to_string(snapshot) + ":" + path;
  }
  /// An entry's inode number follows from its key, so a listing gives the same number
  /// (d_ino) before the entry is looked up as stat does after, and a number stays the
  /// same after the kernel forgets it. The top bit keeps them apart from the layout's.
  static constexpr uint64_t k_hashed = uint64_t(1) << 63;
  static uint64_t ino_of(const std::string& key) { return util::xxh3(key) | k_hashed; }

  /// Decodes the records in `blob` that `sizes` asks for into the cache (each verified);
  /// returns them by id.
  std::unordered_map<Digest, std::shared_ptr<const std::vector<uint8_t>>, util::DigestHash> take(
      const std::vector<uint8_t>& blob, const std::unordered_map<Digest, uint64_t, util::DigestHash>& sizes,
      const std::string& what) {
    std::unordered_map<Digest, std::shared_ptr<const std::vector<uint8_t>>, util::DigestHash> got;
    store::RecordReader reader(blob, what);
    while (auto rec = reader.next()) {
      auto size = sizes.find(rec->id);
      if (size == sizes.end() || got.count(rec->id)) continue;
      if (rec->raw_size != size->second)
        throw Error(ErrorKind::integrity, what + ": chunk " + rec->id.hex() + " has the wrong size");
      auto plain = std::make_shared<std::vector<uint8_t>>(rec->raw_size);
      store::open_record_into(*rec, *plain, what);
      got.emplace(rec->id, plain);
      chunks.put(rec->id, plain, plain->size());
    }
    return got;
  }

  /// A fetch running in the background: the window after a sequential read's, so the
  /// next reads find it cached (the request travels while this thread decodes and
  /// serves). Its records are decoded here, when collected; a failed one is dropped
  /// (the read that needs the chunks fetches them again and reports the error).
  struct Background {
    std::unordered_map<Digest, uint64_t, util::DigestHash> sizes;
    std::future<std::vector<uint8_t>> blob;
    std::string what;
  };
  std::optional<Background> background;

  void collect(bool wait) {
    if (!background) return;
    if (!wait && background->blob.wait_for(std::chrono::seconds(0)) != std::future_status::ready) return;
    Background b = std::move(*background);
    background.reset();
    try {
      take(b.blob.get(), b.sizes, b.what);
    } catch (const Error&) {
    }
  }

  /// Starts fetching the chunks of `f` from index `from` up to `until` bytes that are
  /// not cached, unless a fetch is running already.
  void prefetch(const FileHandle& f, size_t from, uint64_t until) {
    collect(false);
    if (background) return;
    Background b;
    std::vector<Digest> ids;
    for (size_t i = from; i < f.starts.size() && f.starts[i] < until; ++i) {
      const auto& ref = f.entry.chunks[i];
      if (!chunks.contains(ref.id) && b.sizes.emplace(ref.id, ref.size).second) ids.push_back(ref.id);
    }
    if (ids.empty()) return;
    ++fetches;
    b.what = "read " + f.entry.name;
    b.blob = std::async(std::launch::async, [this, ids = std::move(ids)] { return source.records(ids); });
    background = std::move(b);
  }

  /// The decoded chunks `want` of a file (each index once), fetched together with
  /// `ahead` (prefetched into the cache only) when not cached.
  std::vector<std::shared_ptr<const std::vector<uint8_t>>> chunks_for(const FileHandle& f, size_t first, size_t last,
                                                                      size_t ahead_last) {
    const auto& refs = f.entry.chunks;
    std::vector<std::shared_ptr<const std::vector<uint8_t>>> out(last - first + 1);
    std::vector<Digest> missing;
    std::unordered_map<Digest, uint64_t, util::DigestHash> sizes;
    for (size_t i = first; i <= last; ++i) {
      out[i - first] = chunks.get(refs[i].id);
      if (!out[i - first] && sizes.emplace(refs[i].id, refs[i].size).second) missing.push_back(refs[i].id);
    }
    if (missing.empty()) return out;
    if (background) {  // what is missing may be on its way
      collect(true);
      return chunks_for(f, first, last, ahead_last);
    }
    for (size_t i = last + 1; i <= ahead_last && i < refs.size(); ++i)
      if (!chunks.contains(refs[i].id) && sizes.emplace(refs[i].id, refs[i].size).second) missing.push_back(refs[i].id);
    std::string what = "read " + f.entry.name;
    ++fetches;
    auto got = take(source.records(missing), sizes, what);
    for (size_t i = first; i <= last; ++i) {
      if (out[i - first]) continue;
      auto it = got.find(refs[i].id);
      if (it == got.end())
        throw Error(ErrorKind::integrity, what + ": chunk " + refs[i].id.hex() + " is missing from the store");
      out[i - first] = it->second;
    }
    return out;
  }
};

Filesystem::Filesystem(ObjectSource& source, std::vector<Snapshot> snapshots, Options options) {
  if (snapshots.empty()) throw Error(ErrorKind::usage, "no snapshots to mount");
  if (options.single && snapshots.size() != 1) throw Error(ErrorKind::usage, "a single-snapshot mount takes one snapshot");
  m = std::make_unique<Impl>(source, std::move(options));
  m->build_layout(std::move(snapshots));
}

Filesystem::~Filesystem() {
  if (m && m->background) m->background->blob.wait();  // its thread reads the source
}

struct stat Filesystem::lookup(uint64_t parent, std::string_view name) {
  if (changing(parent)) m->maybe_refresh();
  uint64_t ino = m->child(parent, std::string(name));
  auto& n = m->node(ino);
  auto st = m->stat_of(ino, n);
  n.lookups++;
  return st;
}

void Filesystem::forget(uint64_t ino, uint64_t n) {
  auto it = m->nodes.find(ino);
  if (it == m->nodes.end()) return;
  auto& node = it->second;
  node.lookups -= std::min(node.lookups, n);
  if (node.lookups > 0 || node.fixed) return;
  m->keys.erase(node.key);
  m->nodes.erase(it);
}

struct stat Filesystem::getattr(uint64_t ino) { return m->stat_of(ino, m->node(ino)); }

std::string Filesystem::readlink(uint64_t ino) {
  auto& n = m->node(ino);
  if (n.entry.kind != Kind::symlink) throw Error(ErrorKind::usage, n.path + ": not a symlink");
  return n.entry.target;
}

std::unique_ptr<DirHandle> Filesystem::opendir(uint64_t ino) {
  if (changing(ino)) m->maybe_refresh();
  auto& n = m->node(ino);
  if (n.entry.kind != Kind::dir) throw Error(ErrorKind::usage, n.path + ": not a directory");
  auto d = std::make_unique<DirHandle>();
  d->ino = ino;
  if (n.snapshot < 0) {
    for (const auto& [name, child] : n.children) d->items.push_back({name, tree::type_bits(m->node(child).entry.kind), child});
    return d;
  }
  auto t = m->dir_tree(n);
  d->items.reserve(t->entries.size());
  for (const auto& e : t->entries)
    d->items.push_back({e.name, tree::type_bits(e.kind), Impl::ino_of(Impl::key_of(n.snapshot, tree::child_path(n.path, e.name), e))});
  return d;
}

struct stat Filesystem::lookup_item(const DirHandle& dir, size_t index) { return lookup(dir.ino, dir.items.at(index).name); }

std::unique_ptr<FileHandle> Filesystem::open(uint64_t ino) {
  auto& n = m->node(ino);
  if (n.entry.kind != Kind::file) throw Error(ErrorKind::usage, n.path + ": not a regular file");
  auto f = std::make_unique<FileHandle>();
  f->entry = n.entry;
  f->entry.name = n.path;  // for messages
  uint64_t at = 0;
  for (const auto& c : f->entry.chunks) {
    f->starts.push_back(at);
    at += c.size;
  }
  if (at != f->entry.size) throw Error(ErrorKind::integrity, n.path + ": its chunks do not add up to its size");
  return f;
}

size_t Filesystem::read(FileHandle& f, uint64_t offset, std::span<uint8_t> out) {
  uint64_t size = f.entry.size;
  if (offset >= size || out.empty()) return 0;
  uint64_t end = std::min<uint64_t>(size, offset + out.size());
  auto chunk_at = [&](uint64_t pos) {
    return static_cast<size_t>(std::upper_bound(f.starts.begin(), f.starts.end(), pos) - f.starts.begin() - 1);
  };
  size_t first = chunk_at(offset), last = chunk_at(end - 1), ahead = last;
  bool sequential = offset == f.next;
  if (sequential) {  // fetch the next readahead_bytes in the same request
    uint64_t until = end + m->options.readahead_bytes;
    while (ahead + 1 < f.starts.size() && f.starts[ahead + 1] < until) ++ahead;
  }
  auto data = m->chunks_for(f, first, last, ahead);
  // and the window after that in the background, while these are served
  if (sequential && m->options.background) m->prefetch(f, last + 1, end + 2 * m->options.readahead_bytes);
  size_t written = 0;
  for (size_t i = first; i <= last; ++i) {
    const auto& plain = *data[i - first];
    uint64_t from = std::max(offset, f.starts[i]) - f.starts[i];
    uint64_t to = std::min(end, f.starts[i] + plain.size()) - f.starts[i];
    std::copy(plain.begin() + static_cast<ptrdiff_t>(from), plain.begin() + static_cast<ptrdiff_t>(to),
              out.begin() + static_cast<ptrdiff_t>(written));
    written += to - from;
  }
  f.next = end;
  return written;
}

std::vector<std::string> Filesystem::listxattr(uint64_t ino) {
  std::vector<std::string> names;
  for (const auto& x : m->node(ino).entry.xattrs) names.push_back(x.name);
  return names;
}

std::optional<std::string> Filesystem::getxattr(uint64_t ino, std::string_view name) {
  for (const auto& x : m->node(ino).entry.xattrs)
    if (x.name == name) return x.value;
  return std::nullopt;
}

CacheStats Filesystem::stats() const {
  return {m->nodes.size(), m->trees.bytes,  m->trees.hits,  m->trees.misses,
          m->chunks.bytes, m->chunks.hits, m->chunks.misses, m->fetches};
}

size_t Filesystem::snapshot_count() const { return m->listed.size(); }

Usage Filesystem::usage() {
  m->maybe_refresh();
  Usage u;
  for (size_t i : m->listed) {
    u.bytes += m->snapshots[i].bytes;
    u.entries += m->snapshots[i].entries;
  }
  u.snapshots = m->listed.size();
  return u;
}

bool Filesystem::changing(uint64_t ino) const {
  if (m->options.single || !m->options.refresh) return false;
  auto it = m->nodes.find(ino);
  return it != m->nodes.end() && it->second.snapshot < 0;
}

std::vector<std::string> date_names(const std::vector<Snapshot>& snapshots) {
  std::vector<std::string> names;
  std::map<std::string, int> seen;
  for (const auto& s : snapshots) {
    std::string name = util::rfc3339(s.time_ns);
    int n = seen[name]++;
    names.push_back(n == 0 ? name : name + "-" + std::to_string(n));
  }
  return names;
}

std::string fsname(const std::string& device_id) {
  std::string out = "mirage:";
  for (unsigned char c : device_id) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == ':') {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

}  // namespace mirage::mount
