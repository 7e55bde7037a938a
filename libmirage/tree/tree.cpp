#include "libmirage/tree/tree.hpp"

#include <sys/stat.h>

#include <algorithm>

#include "libmirage/util/bytes.hpp"
#include "libmirage/util/error.hpp"
#include "libmirage/util/hex.hpp"

namespace mirage::tree {

namespace {
constexpr std::string_view k_magic = "MTR1";
constexpr std::string_view k_index_magic = "MTX1";
constexpr size_t k_max_name = 255;
constexpr size_t k_max_target = 4095;
constexpr size_t k_max_xattr_name = 255;
constexpr size_t k_max_xattr_value = 65536;
constexpr size_t k_max_group = 1 << 16;
constexpr size_t k_max_xattrs = 4096;

void encode_one(util::ByteWriter& w, const Entry& e) {
  w.str(e.name);
  w.u8(static_cast<uint8_t>(e.kind));
  w.varint(e.mode);
  w.varint(e.uid);
  w.varint(e.gid);
  w.svarint(e.mtime_ns);
  w.varint(e.size);
  w.varint(e.rdev);
  w.str(e.target);
  w.varint(e.xattrs.size());
  for (const auto& x : e.xattrs) {
    w.str(x.name);
    w.str(x.value);
  }
  w.varint(e.chunks.size());
  for (const auto& c : e.chunks) {
    w.raw(c.id.bytes);
    w.varint(c.size);
  }
  if (e.kind == Kind::dir) w.raw(e.subtree.bytes);
  w.str(e.link_group);
  w.u8(e.sparse ? 1 : 0);
}

Entry decode_one(util::ByteReader& r, bool allow_empty_name) {
  Entry e;
  e.name = r.str(k_max_name);
  if (!(allow_empty_name && e.name.empty()) && !valid_name(e.name)) r.fail("unsafe or invalid entry name");
  uint8_t kind = r.u8();
  if (kind < 1 || kind > 7) r.fail("unknown entry kind " + std::to_string(kind));
  e.kind = static_cast<Kind>(kind);
  uint64_t mode = r.varint();
  if (mode > 07777) r.fail("mode out of range");
  e.mode = static_cast<uint32_t>(mode);
  uint64_t uid = r.varint(), gid = r.varint();
  if (uid > UINT32_MAX || gid > UINT32_MAX) r.fail("uid/gid out of range");
  e.uid = static_cast<uint32_t>(uid);
  e.gid = static_cast<uint32_t>(gid);
  e.mtime_ns = r.svarint();
  e.size = r.varint();
  e.rdev = r.varint();
  e.target = r.str(k_max_target);
  if (e.target.find('\0') != std::string::npos) r.fail("NUL in symlink target");
  if ((e.kind == Kind::symlink) != !e.target.empty()) r.fail("symlink target on the wrong kind");
  uint64_t nx = r.varint();
  if (nx > k_max_xattrs) r.fail("too many xattrs");
  for (uint64_t i = 0; i < nx; ++i) {
    Xattr x;
    x.name = r.str(k_max_xattr_name);
    x.value = r.str(k_max_xattr_value);
    if (x.name.empty() || x.name.find('\0') != std::string::npos) r.fail("invalid xattr name");
    if (!e.xattrs.empty() && !(e.xattrs.back().name < x.name)) r.fail("xattrs not in canonical order");
    e.xattrs.push_back(std::move(x));
  }
  uint64_t nchunks = r.varint();
  if (nchunks && e.kind != Kind::file) r.fail("chunks on a non-file entry");
  uint64_t total = 0;
  for (uint64_t i = 0; i < nchunks; ++i) {
    ChunkRef c;
    c.id = Digest::from_span(r.raw(32));
    c.size = r.varint();
    if (c.size == 0) r.fail("empty chunk reference");
    total += c.size;
    e.chunks.push_back(c);
  }
  if (e.kind == Kind::file && total != e.size) r.fail("chunk sizes do not add up to the file size");
  if (e.kind == Kind::dir) e.subtree = Digest::from_span(r.raw(32));
  e.link_group = r.str(k_max_group);
  uint8_t flags = r.u8();
  if (flags > 1) r.fail("unknown flags");
  e.sparse = flags & 1;
  return e;
}
}  // namespace

std::string_view kind_name(Kind kind) {
  switch (kind) {
    case Kind::file: return "file";
    case Kind::dir: return "dir";
    case Kind::symlink: return "symlink";
    case Kind::chardev: return "char";
    case Kind::blockdev: return "block";
    case Kind::fifo: return "fifo";
    case Kind::socket: return "socket";
  }
  return "unknown";
}

uint32_t type_bits(Kind kind) {
  switch (kind) {
    case Kind::file: return S_IFREG;
    case Kind::dir: return S_IFDIR;
    case Kind::symlink: return S_IFLNK;
    case Kind::chardev: return S_IFCHR;
    case Kind::blockdev: return S_IFBLK;
    case Kind::fifo: return S_IFIFO;
    case Kind::socket: return S_IFSOCK;
  }
  return 0;  // decode() refuses any other kind
}

const Entry* Tree::find(std::string_view name) const {
  auto it = std::lower_bound(entries.begin(), entries.end(), name,
                             [](const Entry& e, std::string_view n) { return std::string_view(e.name) < n; });
  return it != entries.end() && it->name == name ? &*it : nullptr;
}

bool valid_name(std::string_view name) {
  return !name.empty() && name.size() <= k_max_name && name != "." && name != ".." &&
         name.find('/') == std::string_view::npos && name.find('\0') == std::string_view::npos;
}

std::optional<std::string> entry_problem(const Entry& e) {
  if (!valid_name(e.name)) return "invalid name";
  if (e.target.size() > k_max_target)
    return "symlink target of " + std::to_string(e.target.size()) + " bytes, more than " + std::to_string(k_max_target);
  if (e.xattrs.size() > k_max_xattrs)
    return std::to_string(e.xattrs.size()) + " xattrs, more than " + std::to_string(k_max_xattrs);
  for (const auto& x : e.xattrs) {
    if (x.name.empty() || x.name.size() > k_max_xattr_name || x.name.find('\0') != std::string::npos)
      return "xattr name of " + std::to_string(x.name.size()) + " bytes is not storable";
    if (x.value.size() > k_max_xattr_value)
      return "xattr " + x.name + " of " + std::to_string(x.value.size()) + " bytes, more than " +
             std::to_string(k_max_xattr_value);
  }
  if (e.link_group.size() > k_max_group) return "hardlink group path too long";
  return std::nullopt;
}

std::vector<uint8_t> encode(Tree tree) { return encode_in_place(tree); }

std::vector<uint8_t> encode_in_place(Tree& tree) {
  std::sort(tree.entries.begin(), tree.entries.end(), [](const Entry& a, const Entry& b) { return a.name < b.name; });
  util::ByteWriter w;
  w.raw(k_magic);
  w.varint(tree.entries.size());
  for (size_t i = 0; i < tree.entries.size(); ++i) {
    auto& e = tree.entries[i];
    if (!valid_name(e.name)) throw Error(ErrorKind::usage, "tree entry: invalid name");
    if (i && tree.entries[i - 1].name == e.name) throw Error(ErrorKind::usage, "tree entry: duplicate name " + e.name);
    std::sort(e.xattrs.begin(), e.xattrs.end(), [](const Xattr& a, const Xattr& b) { return a.name < b.name; });
    encode_one(w, e);
  }
  return w.take();
}

namespace {
/// Reads an MTR1 object's magic and entry count, leaving `r` at the first entry.
uint64_t read_header(util::ByteReader& r) {
  auto magic = r.raw(4);
  if (std::string_view(reinterpret_cast<const char*>(magic.data()), 4) != k_magic) r.fail("not a tree object");
  return r.varint();
}
}  // namespace

uint64_t entry_count(std::span<const uint8_t> data, const std::string& what) {
  util::ByteReader r(data, what);
  return read_header(r);
}

Tree decode(std::span<const uint8_t> data, const std::string& what) {
  util::ByteReader r(data, what);
  uint64_t count = read_header(r);
  if (count > data.size() / 14) r.fail("entry count exceeds object size");  // an entry takes 14 bytes at least
  Tree tree;
  tree.entries.reserve(static_cast<size_t>(count));
  for (uint64_t i = 0; i < count; ++i) {
    Entry e = decode_one(r, false);
    if (!tree.entries.empty() && !(tree.entries.back().name < e.name)) r.fail("entries not in canonical order");
    tree.entries.push_back(std::move(e));
  }
  if (!r.at_end()) r.fail("trailing bytes");
  return tree;
}

namespace {
Object object_of(std::vector<uint8_t> data) {
  Digest id = util::sha256(data);
  return {id, std::move(data)};
}

// A piece ends after an entry whose name hashes to a multiple of k_piece_target (once
// it holds k_piece_min entries), or once it reaches k_piece_max_bytes.
bool cut_after(const Entry& e) { return util::xxh3(e.name) % k_piece_target == 0; }
}  // namespace

DirObjects encode_dir(Tree tree) { return encode_dir_in_place(tree); }

DirObjects encode_dir_in_place(Tree& tree) {
  auto whole = encode_in_place(tree);
  if (entry_count(whole, "tree") <= k_split_entries && whole.size() <= k_split_bytes) return {{}, object_of(std::move(whole))};
  // encode() sorted and checked the entries; split its canonical bytes at entry bounds.
  Tree sorted = decode(whole, "tree");
  DirObjects out;
  std::vector<Piece> index;
  Tree piece;
  size_t bytes = 0;
  auto flush = [&] {
    index.push_back({{}, piece.entries.size(), piece.entries.front().name});
    out.pieces.push_back(object_of(encode(std::move(piece))));
    index.back().id = out.pieces.back().id;
    piece = Tree{};
    bytes = 0;
  };
  for (auto& e : sorted.entries) {
    bool cut = piece.entries.size() + 1 >= k_piece_min && cut_after(e);
    bytes += encode_entry(e).size();
    piece.entries.push_back(std::move(e));
    if (cut || bytes >= k_piece_max_bytes || piece.entries.size() >= k_piece_max_entries) flush();
  }
  if (!piece.entries.empty()) flush();
  // No cut fell (few entries, none hashing to a cut): the one piece is the whole.
  if (out.pieces.size() == 1) return {{}, std::move(out.pieces.front())};
  util::ByteWriter w;
  w.raw(k_index_magic);
  w.varint(index.size());
  for (const auto& p : index) {
    w.raw(p.id.bytes);
    w.varint(p.entries);
    w.str(p.first);
  }
  out.top = object_of(w.take());
  return out;
}

bool is_index(std::span<const uint8_t> data) {
  return data.size() >= 4 && std::string_view(reinterpret_cast<const char*>(data.data()), 4) == k_index_magic;
}

std::vector<Piece> decode_index(std::span<const uint8_t> data, const std::string& what) {
  util::ByteReader r(data, what);
  auto magic = r.raw(4);
  if (std::string_view(reinterpret_cast<const char*>(magic.data()), 4) != k_index_magic) r.fail("not a tree index");
  uint64_t count = r.varint();
  if (count < 2) r.fail("an index of fewer than two pieces");
  if (count > data.size() / 34) r.fail("piece count exceeds object size");
  std::vector<Piece> index;
  index.reserve(static_cast<size_t>(count));
  for (uint64_t i = 0; i < count; ++i) {
    Piece p;
    p.id = Digest::from_span(r.raw(32));
    p.entries = r.varint();
    if (p.entries == 0) r.fail("an empty piece");
    p.first = r.str(k_max_name);
    if (!valid_name(p.first)) r.fail("unsafe or invalid first name of a piece");
    if (!index.empty() && !(index.back().first < p.first)) r.fail("pieces not in canonical order");
    index.push_back(std::move(p));
  }
  if (!r.at_end()) r.fail("trailing bytes");
  return index;
}

namespace {
/// Checks piece `i` against its index row and the next piece's first name.
void check_piece(const std::vector<Piece>& index, size_t i, const Tree& piece, const std::string& what) {
  auto bad = [&](const std::string& why) {
    throw Error(ErrorKind::integrity, what + ": piece " + std::to_string(i + 1) + " of " + std::to_string(index.size()) + " " + why);
  };
  if (piece.entries.size() != index[i].entries) bad("does not hold the entries its index says");
  if (piece.entries.front().name != index[i].first) bad("does not start with the name its index says");
  if (i + 1 < index.size() && !(piece.entries.back().name < index[i + 1].first)) bad("overlaps the next one");
}
}  // namespace

Tree join(const std::vector<Piece>& index, std::vector<Tree> pieces, const std::string& what) {
  if (pieces.size() != index.size())
    throw Error(ErrorKind::integrity, what + ": " + std::to_string(pieces.size()) + " pieces for an index of " +
                                          std::to_string(index.size()));
  Tree out;
  for (size_t i = 0; i < pieces.size(); ++i) {
    check_piece(index, i, pieces[i], what);
    auto& entries = pieces[i].entries;
    out.entries.insert(out.entries.end(), std::make_move_iterator(entries.begin()), std::make_move_iterator(entries.end()));
  }
  return out;
}

void for_each_piece(const Digest& id, const Fetch& fetch, const std::string& what,
                    const std::function<void(const Digest& object, Tree& piece)>& each, size_t max_entries) {
  auto decode_bounded = [&](std::span<const uint8_t> data, const std::string& name) {
    if (uint64_t n = max_entries ? entry_count(data, name) : 0; n > max_entries)
      throw Error(ErrorKind::integrity, name + ": a tree object of " + std::to_string(n) + " entries, over " +
                                            std::to_string(max_entries) + " (large directories are split into pieces)");
    return decode(data, name);
  };
  auto data = fetch(id);
  if (!is_index(data)) {
    Tree whole = decode_bounded(data, what);
    data = {};
    each(id, whole);
    return;
  }
  auto index = decode_index(data, what);
  data = {};
  // Each piece is checked before the next is fetched: a lying index (the same piece named
  // again and again) costs one piece's read, not the index's length of them.
  for (size_t i = 0; i < index.size(); ++i) {
    Tree piece = decode_bounded(fetch(index[i].id), what + " piece " + index[i].id.hex());
    check_piece(index, i, piece, what);
    each(index[i].id, piece);
  }
}

void walk_reachable(const Digest& root, const Fetch& fetch, const std::function<bool(const Digest& dir)>& enter,
                    const std::function<void(const Digest& object)>& object,
                    const std::function<void(const Digest& dir, const Error& error)>& unreadable) {
  std::vector<Digest> stack{root};
  while (!stack.empty()) {
    Digest id = stack.back();
    stack.pop_back();
    if (!enter(id)) continue;  // walked already (unchanged subtrees are shared)
    try {
      // A piece at a time: a split directory is never held whole.
      for_each_piece(id, fetch, "tree " + id.hex(), [&](const Digest& piece_id, Tree& piece) {
        if (piece_id != id) object(piece_id);
        for (const auto& e : piece.entries) {
          if (e.kind == Kind::dir) stack.push_back(e.subtree);
          for (const auto& c : e.chunks) object(c.id);
        }
      });
    } catch (const Error& e) {
      if (!unreadable) throw;
      unreadable(id, e);
    }
  }
}

Tree load(const Digest& id, const Fetch& fetch, const std::string& what, std::vector<Digest>* pieces) {
  std::vector<Tree> parts;  // joined once their count is known: no entry moved twice
  for_each_piece(id, fetch, what, [&](const Digest& object, Tree& piece) {
    if (pieces && object != id) pieces->push_back(object);
    parts.push_back(std::move(piece));
  });
  if (parts.size() == 1) return std::move(parts.front());
  Tree out;
  size_t total = 0;
  for (const auto& part : parts) total += part.entries.size();
  out.entries.reserve(total);
  for (auto& part : parts)
    out.entries.insert(out.entries.end(), std::make_move_iterator(part.entries.begin()),
                       std::make_move_iterator(part.entries.end()));
  return out;
}

std::vector<uint8_t> encode_entry(const Entry& entry) {
  util::ByteWriter w;
  Entry e = entry;
  std::sort(e.xattrs.begin(), e.xattrs.end(), [](const Xattr& a, const Xattr& b) { return a.name < b.name; });
  encode_one(w, e);
  return w.take();
}

Entry decode_entry(std::span<const uint8_t> data, const std::string& what) {
  util::ByteReader r(data, what);
  Entry e = decode_one(r, true);
  if (!r.at_end()) r.fail("trailing bytes");
  return e;
}

std::string child_path(const std::string& dir, const std::string& name) {
  return dir == "/" ? "/" + name : dir + "/" + name;
}

std::string parent_path(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

std::string base_name(const std::string& path) { return path.substr(path.rfind('/') + 1); }

Entry decode_entry_hex(std::string_view hex, const std::string& what) {
  auto raw = util::from_hex(hex);
  if (!raw) throw Error(ErrorKind::integrity, what + ": entry is not hex");
  return decode_entry(std::span(reinterpret_cast<const uint8_t*>(raw->data()), raw->size()), what);
}

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> parts;
  if (path.find('\0') != std::string_view::npos) throw Error(ErrorKind::usage, "path contains NUL");
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t slash = path.find('/', pos);
    if (slash == std::string_view::npos) slash = path.size();
    std::string_view part = path.substr(pos, slash - pos);
    if (!part.empty() && part != ".") {
      if (!valid_name(part)) {
        // A name past any limit is shown cut: the message must not carry a 100 KB argument twice.
        auto cut = [](std::string_view s) {
          constexpr size_t k_shown = 64;
          return s.size() <= k_shown ? std::string(s)
                                     : std::string(s.substr(0, k_shown)) + "... (" + std::to_string(s.size()) + " bytes)";
        };
        std::string why = part.size() > k_max_name ? ": a name has at most " + std::to_string(k_max_name) + " bytes" : "";
        throw Error(ErrorKind::usage, "path " + cut(path) + ": invalid component '" + cut(part) + "'" + why);
      }
      parts.emplace_back(part);
    }
    pos = slash + 1;
  }
  return parts;
}

}  // namespace mirage::tree
