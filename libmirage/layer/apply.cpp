#include "libmirage/layer/apply.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <set>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <unordered_map>

#include "libmirage/materialize/content.hpp"
#include "libmirage/materialize/metadata.hpp"
#include "libmirage/materialize/stream.hpp"
#include "libmirage/scan/scanner.hpp"
#include "libmirage/store/record.hpp"
#include "libmirage/util/bytes.hpp"
#include "libmirage/util/clock.hpp"
#include "libmirage/util/error.hpp"
#include "libmirage/util/fd.hpp"
#include "libmirage/util/hex.hpp"
#include "libmirage/util/log.hpp"
#include "libmirage/util/spawn.hpp"
#include "libmirage/util/zstd.hpp"

namespace mirage::layer {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr uint64_t k_fetch_batch = 32u << 20;

using tree::base_name;
using tree::parent_path;

std::string entry_hex(const tree::Entry& e) { return util::to_hex(tree::encode_entry(e)); }

// A Linux name is bytes, not always UTF-8 (which JSON strings must be): the journal
// carries every path and temporary name as the hex of its bytes, as it carries entries.
// A journal without "names": "hex" (written before) holds them as plain strings.
std::string name_out(const std::string& name) {
  return util::to_hex(std::span(reinterpret_cast<const uint8_t*>(name.data()), name.size()));
}
std::string name_in(const json& j, bool hex) {
  std::string text = j.get<std::string>();
  if (!hex) return text;
  auto bytes = util::from_hex(text);
  if (!bytes) throw Error(ErrorKind::integrity, "apply journal: a name is not hex: " + text.substr(0, 80));
  return *bytes;
}
bool hex_names(const json& journal) { return journal.value("names", "") == "hex"; }

/// Directory fds below a root, opened component by component without following symlinks.
bool exists_at(int dirfd, const std::string& name, struct stat* st = nullptr);

class Dirs {
 public:
  explicit Dirs(const fs::path& root) : m_root(root) {
    m_fds["/"] = std::make_shared<util::Fd>(util::open_dir(root.string()));
  }
  /// The fd of `dir`; valid until the next trim().
  int get(const std::string& dir) {
    auto it = m_fds.find(dir);
    if (it != m_fds.end()) return it->second->get();
    int parent = get(parent_path(dir));
    auto fd = std::make_shared<util::Fd>(util::open_dir_at(parent, base_name(dir), (m_root / dir.substr(1)).string()));
    m_fds[dir] = fd;
    return fd->get();
  }
  /// The fd of `dir` as get(), or -1 when it or a directory above it is not there.
  int find(const std::string& dir) {
    if (auto it = m_fds.find(dir); it != m_fds.end()) return it->second->get();
    int parent = find(parent_path(dir));
    if (parent < 0 || !exists_at(parent, base_name(dir))) return -1;
    return get(dir);
  }
  /// Closes cached fds when there are many; call between steps, never while holding one.
  void trim() {
    if (m_fds.size() <= 256) return;  // well below the usual soft limit of 1024 fds
    auto root = m_fds["/"];
    m_fds.clear();
    m_fds["/"] = root;
  }
  void forget(const std::string& dir) {
    std::string prefix = dir + "/";
    for (auto it = m_fds.begin(); it != m_fds.end();) {
      if (it->first == dir || it->first.rfind(prefix, 0) == 0)
        it = m_fds.erase(it);
      else
        ++it;
    }
  }

 private:
  fs::path m_root;
  std::map<std::string, std::shared_ptr<util::Fd>> m_fds;
};

bool exists_at(int dirfd, const std::string& name, struct stat* st) {
  struct stat s;
  if (::fstatat(dirfd, name.c_str(), st ? st : &s, AT_SYMLINK_NOFOLLOW) == 0) return true;
  if (errno == ENOENT) return false;
  throw_errno("stat " + name);
}

/// Renames `name` in dirfd to name.mirage-local (replacing an older one).
/// Renames `name` (at `path`) to NAME.mirage-local; `before`, when given, is told the
/// new name first (staging journals it, so a rollback can put it back).
void set_aside(int dirfd, const std::string& name, const std::string& path,
               const std::function<void(const std::string&)>& before = nullptr) {
  std::string local = name + ".mirage-local";
  if (local.size() > 255) local = name.substr(0, 240) + ".mirage-local";
  struct stat st;
  // append, not += "." + …: GCC 12 at -O3 warns -Wrestrict falsely there
  if (exists_at(dirfd, local, &st) && S_ISDIR(st.st_mode)) local.append(".").append(util::random_hex(4));
  if (before) before(local);
  if (::renameat(dirfd, name.c_str(), dirfd, local.c_str()) != 0) throw_errno("set " + path + " aside");
}

void write_journal(const fs::path& file, const json& j) {
  util::AtomicFile f(file, 0600);
  f.write(j.dump());
  f.commit();
}

/// Carries out the steps of a journal in "commit" state; each step is idempotent.
void finish_commit(const fs::path& root, const json& journal, ApplyResult* result,
                   const std::function<void(size_t)>& before_step) {
  Dirs dirs(root);
  auto warn = [&](std::string m) {
    if (result) result->warnings.push_back(m);
  };
  const auto& steps = journal.at("steps");
  bool hex = hex_names(journal);
  for (size_t i = 0; i < steps.size(); ++i) {
    if (before_step) before_step(i);
    dirs.trim();
    const auto& s = steps[i];
    std::string op = s.at("op"), path = name_in(s.at("path"), hex);
    // A remove or a metadata change below a directory a later step removed, before the
    // crash: done (a rerun starts from the first step).
    bool done_if_gone = op == "remove" || op == "meta";
    int dirfd = done_if_gone ? dirs.find(parent_path(path)) : dirs.get(parent_path(path));
    if (dirfd < 0) continue;
    std::string name = base_name(path);
    if (op == "install") {
      std::string tmp = name_in(s.at("tmp"), hex);
      if (!exists_at(dirfd, tmp)) continue;  // done before the crash
      if (s.value("save_local", false) && exists_at(dirfd, name)) {
        set_aside(dirfd, name, path);
        if (result) result->saved_local++;
      } else {
        struct stat st;
        if (exists_at(dirfd, name, &st) && S_ISDIR(st.st_mode)) {
          set_aside(dirfd, name, path);  // a directory where the layer has a file
          dirs.forget(path);
          if (result) result->saved_local++;
        }
      }
      if (::renameat(dirfd, tmp.c_str(), dirfd, name.c_str()) != 0) throw_errno("put " + path + " in place");
    } else if (op == "link") {
      std::string tmp = name_in(s.at("tmp"), hex);
      if (!exists_at(dirfd, tmp)) continue;
      if (::renameat(dirfd, tmp.c_str(), dirfd, name.c_str()) != 0) throw_errno("put " + path + " in place");
    } else if (op == "meta") {
      tree::Entry e = tree::decode_entry_hex(s.at("entry").get<std::string>(), path);
      if (!exists_at(dirfd, name)) continue;
      if (e.kind == tree::Kind::dir) {
        int fd = dirs.get(path);
        materialize::set_metadata_fd(fd, e, path, warn);
      } else {
        materialize::set_metadata(dirfd, name, e, path, warn);
      }
    } else if (op == "remove") {
      struct stat st;
      if (!exists_at(dirfd, name, &st)) continue;
      if (s.value("save_local", false)) {
        set_aside(dirfd, name, path);
        if (result) result->saved_local++;
        continue;
      }
      if (S_ISDIR(st.st_mode)) {
        dirs.forget(path);
        if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0) {
          if (errno != ENOTEMPTY && errno != EEXIST) throw_errno("remove " + path);
          if (result) result->kept_not_empty++;
          warn(path + ": kept (a directory the layers dropped, still holding files they do not own)");
          continue;
        }
      } else if (::unlinkat(dirfd, name.c_str(), 0) != 0 && errno != ENOENT) {
        throw_errno("remove " + path);
      }
      if (result) result->removed++;
    } else {
      throw Error(ErrorKind::integrity, "apply journal: unknown step '" + op + "'");
    }
  }
}

class Applier {
 public:
  Applier(const Plan& plan, const Flat& e, materialize::ObjectSource& source, const ApplyOptions& opts)
      : m_plan(plan), m_e(e), m_source(source), m_opts(opts), m_dirs(opts.root), m_token(util::random_hex(4)) {
    for (const auto& [path, entry] : e) {
      if (entry.kind != tree::Kind::file) continue;
      uint64_t off = 0;
      for (const auto& c : entry.chunks) {
        m_local.emplace(c.id, LocalChunk{&path, off, c.size});
        off += c.size;
      }
    }
    for (size_t i = 0; i < plan.ops.size(); ++i) m_op_index.emplace(plan.ops[i].path, i);
    if (opts.placeholder) choose_placeholders();
  }

  ApplyResult run() {
    auto start = std::chrono::steady_clock::now();
    begin_staging();
    stage_all();
    auto staged = std::chrono::steady_clock::now();
    ApplyResult r = commit();
    r.stage_seconds = std::chrono::duration<double>(staged - start).count();
    r.commit_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - staged).count();
    return r;
  }

 private:
  /// Names every temporary and new directory before making any, so a crash can be undone.
  void begin_staging() {
    std::vector<std::string> temps, made;
    for (size_t i = 0; i < m_plan.ops.size(); ++i) {
      const Op& op = m_plan.ops[i];
      bool write = op.action == Action::create || op.action == Action::replace || op.action == Action::merge;
      if (!write) continue;
      if (op.entry.kind == tree::Kind::dir) {
        made.push_back(op.path);
      } else {
        m_tmp[i] = ".mirage-new-" + m_token + "-" + std::to_string(i);
        temps.push_back(parent_path(op.path) == "/" ? "/" + m_tmp[i] : parent_path(op.path) + "/" + m_tmp[i]);
      }
    }
    // The times of the existing directories staging writes in (making a temporary or a
    // directory there changes their mtime): a rollback sets them back.
    std::set<std::string> touched, made_set(made.begin(), made.end());
    for (const auto& t : temps) touched.insert(parent_path(t));
    for (const auto& d : made) touched.insert(parent_path(d));
    json times = json::array();
    for (const auto& dir : touched) {
      if (made_set.count(dir)) continue;
      struct stat st;
      m_dirs.trim();
      try {
        if (::fstat(m_dirs.get(dir), &st) != 0) continue;
      } catch (const Error&) {
        continue;  // not there yet: made by this apply, under a directory it makes
      }
      times.push_back({name_out(dir), int64_t(st.st_atim.tv_sec) * 1000000000 + st.st_atim.tv_nsec,
                       int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec});
    }
    json temps_json = json::array(), made_json = json::array();
    for (const auto& t : temps) temps_json.push_back(name_out(t));
    for (const auto& d : made) made_json.push_back(name_out(d));
    m_staging = {{"state", "staging"}, {"names", "hex"},   {"temps", temps_json},
                 {"dirs", made_json},  {"dir_times", times}, {"set_aside", json::array()}};
    write_journal(m_opts.journal, m_staging);
  }

  /// Directories first (in path order, parents before children), then contents in batches.
  void stage_all() {
    uint64_t total = 0, done = 0;  // the bytes staged below (fetch + local bytes count a shared chunk once)
    std::vector<size_t> files, links;
    for (size_t i = 0; i < m_plan.ops.size(); ++i) {
      const Op& op = m_plan.ops[i];
      if (!m_tmp.count(i) && !(op.entry.kind == tree::Kind::dir && (op.action == Action::create || op.action == Action::replace)))
        continue;
      m_dirs.trim();
      if (op.entry.kind == tree::Kind::dir) {
        make_dir(op);
      } else if (op.entry.kind == tree::Kind::file && op.action != Action::merge && is_follower(op)) {
        links.push_back(i);
      } else {
        files.push_back(i);
      }
    }
    auto size_of = [&](size_t i) {  // what progress counts of op i
      const Op& op = m_plan.ops[i];
      if (op.action == Action::merge) return uint64_t(op.content.size());
      return op.entry.kind == tree::Kind::file ? op.entry.size : 0;
    };
    for (size_t i : files) total += size_of(i);
    size_t at = 0;
    while (at < files.size()) {
      std::vector<Digest> need;
      uint64_t bytes = 0;
      size_t end = at;
      std::vector<Digest> pairs;  // (wanted, base): chunks to fetch as deltas against E's
      std::set<Digest> paired;
      for (; end < files.size() && (bytes < k_fetch_batch || end == at); ++end) {
        const Op& op = m_plan.ops[files[end]];
        if (op.entry.kind != tree::Kind::file || op.action == Action::merge || m_placeholder.count(files[end])) continue;
        auto old = m_e.find(op.path);
        const tree::Entry* before = old != m_e.end() && old->second.kind == tree::Kind::file ? &old->second : nullptr;
        auto bases = before ? delta_bases(before->chunks, op.entry.chunks)
                            : std::vector<std::optional<Digest>>(op.entry.chunks.size());
        for (size_t k = 0; k < op.entry.chunks.size(); ++k) {
          const auto& c = op.entry.chunks[k];
          if (!m_local.count(c.id)) {
            const auto& base = bases[k];
            if (base && m_local.count(*base)) {
              if (paired.insert(c.id).second) {
                pairs.push_back(c.id);
                pairs.push_back(*base);
              }
            } else {
              need.push_back(c.id);
            }
            bytes += c.size;
          }
        }
      }
      m_plain.clear();
      if (!pairs.empty()) fetch_deltas(pairs, need);
      std::vector<uint8_t> blob;
      std::unordered_map<Digest, store::Record, util::DigestHash> records;
      if (!need.empty()) {
        std::sort(need.begin(), need.end());
        need.erase(std::unique(need.begin(), need.end()), need.end());
        blob = m_source.records(need);
        store::RecordReader reader(blob, "layer content");
        while (auto rec = reader.next()) records.emplace(rec->id, *rec);
      }
      for (size_t k = at; k < end; ++k) {
        if (m_opts.before_stage) m_opts.before_stage(k);
        m_dirs.trim();
        stage(files[k], records);
        done += size_of(files[k]);
        if (m_opts.progress) m_opts.progress(done, total);
      }
      at = end;
    }
    for (size_t i : links) {
      m_dirs.trim();
      stage_link(i);
    }
    ::syncfs(m_dirs.get("/"));

  }

  /// Journals the commit steps, carries them out, and forgets the journal.
  ApplyResult commit() {
    json steps = json::array();
    for (size_t i = 0; i < m_plan.ops.size(); ++i) {
      const Op& op = m_plan.ops[i];
      auto t = m_tmp.find(i);
      if (t != m_tmp.end())
        steps.push_back({{"op", m_linked.count(i) ? "link" : "install"},
                         {"path", name_out(op.path)},
                         {"tmp", name_out(t->second)},
                         {"save_local", op.save_local}});
      else if (op.action == Action::metadata && op.entry.kind != tree::Kind::dir)
        steps.push_back({{"op", "meta"}, {"path", name_out(op.path)}, {"entry", entry_hex(op.entry)}});
      else if (op.action == Action::remove)
        steps.push_back({{"op", "remove"}, {"path", name_out(op.path)}, {"save_local", op.save_local}});
    }
    // Directory metadata last, deepest first, so writing inside does not change it after.
    std::vector<const Op*> dir_ops;
    for (const auto& op : m_plan.ops)
      if (op.entry.kind == tree::Kind::dir &&
          (op.action == Action::create || op.action == Action::replace || op.action == Action::metadata))
        dir_ops.push_back(&op);
    std::sort(dir_ops.begin(), dir_ops.end(), [](const Op* a, const Op* b) { return a->path > b->path; });
    for (const Op* op : dir_ops)
      steps.push_back({{"op", "meta"}, {"path", name_out(op->path)}, {"entry", entry_hex(op->entry)}});
    json journal = {{"state", "commit"}, {"names", "hex"}, {"steps", steps}};
    write_journal(m_opts.journal, journal);
    finish_commit(m_opts.root, journal, &m_result, m_opts.before_step);
    for (const auto& op : m_plan.ops) {
      if (op.action == Action::metadata) m_result.metadata++;
      if (op.action == Action::merge) m_result.merged++;
    }
    ::syncfs(m_dirs.get("/"));
    fs::remove(m_opts.journal);
    record_installed();
    return m_result;
  }


  void record_installed() {
    for (const auto& [i, tmp] : m_tmp) {
      const Op& op = m_plan.ops[i];
      if (op.entry.kind != tree::Kind::file || op.action == Action::merge || placeholder_or_link_to_one(i)) continue;
      m_dirs.trim();
      struct stat st;
      try {
        if (::fstatat(m_dirs.get(parent_path(op.path)), base_name(op.path).c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
      } catch (const Error&) {
        continue;
      }
      if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != op.entry.size) continue;
      scan::FileStamp stamp{static_cast<uint64_t>(st.st_size),
                            int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec,
                            int64_t(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec,
                            static_cast<uint64_t>(st.st_ino)};
      m_result.installed.emplace_back(parent_path(op.path), scan::CachedFile{base_name(op.path), stamp, op.entry.chunks});
    }
  }

  /// The files written now that ApplyOptions::placeholder picks. A hardlink group is one
  /// inode, staged once (its other names are links to its first member): it is a
  /// placeholder only when every name of it written now is picked, so a name in the
  /// minimal set (/usr/bin/x, linked with /home/u/x) is never a hole until the fill.
  void choose_placeholders() {
    std::set<std::string> whole;  // the link groups with a name not picked
    std::vector<size_t> picked;
    for (size_t i = 0; i < m_plan.ops.size(); ++i) {
      const Op& op = m_plan.ops[i];
      bool write = op.action == Action::create || op.action == Action::replace;
      if (!write || op.entry.kind != tree::Kind::file || op.entry.size == 0) continue;
      if (m_opts.placeholder(op.path, op.entry)) picked.push_back(i);
      else if (!op.entry.link_group.empty()) whole.insert(op.entry.link_group);
    }
    for (size_t i : picked)
      if (!whole.count(m_plan.ops[i].entry.link_group)) m_placeholder.insert(i);
  }

  /// A placeholder, or a hardlink staged to one (the same inode).
  bool placeholder_or_link_to_one(size_t i) const {
    if (m_placeholder.count(i)) return true;
    if (!m_linked.count(i)) return false;
    auto head = m_op_index.find(m_plan.ops[i].entry.link_group);
    return head != m_op_index.end() && m_placeholder.count(head->second) > 0;
  }

  bool is_follower(const Op& op) {
    if (op.entry.link_group.empty() || op.entry.link_group == op.path) return false;
    // Linked to the group's first member when that one is written now.
    auto head = m_op_index.find(op.entry.link_group);
    return head != m_op_index.end() && m_tmp.count(head->second) > 0;
  }

  void make_dir(const Op& op) {
    int parent = m_dirs.get(parent_path(op.path));
    std::string name = base_name(op.path);
    struct stat st;
    if (exists_at(parent, name, &st)) {
      if (S_ISDIR(st.st_mode)) return;
      // A file where the layer has a directory: journaled before it moves.
      set_aside(parent, name, op.path, [&](const std::string& local) {
        m_staging["set_aside"].push_back({name_out(op.path), name_out(local)});
        write_journal(m_opts.journal, m_staging);
      });
      m_result.saved_local++;
    }
    if (::mkdirat(parent, name.c_str(), 0700) != 0) throw_errno("create directory " + op.path);
  }

  void stage(size_t i, const std::unordered_map<Digest, store::Record, util::DigestHash>& records) {
    const Op& op = m_plan.ops[i];
    int dirfd = m_dirs.get(parent_path(op.path));
    const std::string& tmp = m_tmp.at(i);
    auto warn = [this](std::string m) { m_result.warnings.push_back(std::move(m)); };
    if (op.entry.kind != tree::Kind::file) {
      ::unlinkat(dirfd, tmp.c_str(), 0);
      materialize::make_node(dirfd, tmp, op.entry, op.path);
      materialize::set_metadata(dirfd, tmp, op.entry, op.path, warn, true);
      m_result.written++;
      return;
    }
    util::Fd fd(::openat(dirfd, tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd) throw_errno("create " + op.path);
    tree::Entry entry = op.entry;
    if (m_placeholder.count(i)) {  // its bytes come after the commit
      materialize::make_placeholder_fd(fd.get(), entry, op.path, warn);
      m_result.written++;
      m_result.placeholders.push_back(op.path);
      return;
    }
    if (op.action == Action::merge) {
      util::write_all(fd.get(), std::span(reinterpret_cast<const uint8_t*>(op.content.data()), op.content.size()), op.path);
      entry.mtime_ns = util::now_ns();
    } else {
      materialize::ContentWriter out(fd.get(), entry, op.path);
      for (const auto& c : entry.chunks) {
        read_chunk(c, records, op.path);
        out.write(m_buf);
      }
      out.finish();
    }
    materialize::set_metadata_fd(fd.get(), entry, op.path, warn);
    m_result.written++;
  }

  void stage_link(size_t i) {
    const Op& op = m_plan.ops[i];
    size_t head = m_op_index.at(op.entry.link_group);  // is_follower() found it
    int from = m_dirs.get(parent_path(op.entry.link_group));
    int dirfd = m_dirs.get(parent_path(op.path));
    const std::string& tmp = m_tmp.at(i);
    ::unlinkat(dirfd, tmp.c_str(), 0);
    if (::linkat(from, m_tmp.at(head).c_str(), dirfd, tmp.c_str(), 0) != 0) throw_errno("hardlink " + op.path);
    m_linked.insert(i);
    m_result.linked++;
  }

  /// Reads chunk `id` from the endpoint's own files into `out`, verified; false when
  /// the endpoint had no such chunk or no copy matches any more.
  bool read_local(const Digest& id, std::vector<uint8_t>& out) {
    auto range = m_local.equal_range(id);
    for (auto it = range.first; it != range.second; ++it) {
      const LocalChunk& at = it->second;
      const std::string& src = *at.path;
      out.resize(at.size);
      if (src != m_open_path) {
        // Where the scan saw it, but something else may stand there now: never through a
        // symlink (out of the root, or to a device node, whose open can act), never a
        // FIFO's wait; only a regular file is read (a miss: the chunk is fetched).
        struct stat st;
        m_open = util::Fd(scan::open_beneath(m_dirs.get("/"), src.substr(1)));
        if (m_open && (::fstat(m_open.get(), &st) != 0 || !S_ISREG(st.st_mode))) m_open = util::Fd();
        m_open_path = src;
      }
      if (!m_open) continue;
      ssize_t n = ::pread(m_open.get(), out.data(), at.size, static_cast<off_t>(at.offset));
      if (n == static_cast<ssize_t>(at.size) && util::sha256(out) == id) return true;
    }
    return false;
  }

  /// Fetches `pairs` as deltas against the endpoint's own chunks into m_plain; what
  /// cannot be had that way goes to `need` (fetched whole).
  void fetch_deltas(const std::vector<Digest>& pairs, std::vector<Digest>& need) {
    auto blob = m_source.deltas(pairs);
    if (blob.empty()) {
      for (size_t i = 0; i < pairs.size(); i += 2) need.push_back(pairs[i]);
      return;
    }
    util::ByteReader r(blob, "chunk deltas");
    std::vector<uint8_t> base;
    for (size_t i = 0; i < pairs.size(); i += 2) {
      auto id_bytes = r.raw(32);
      if (Digest::from_span(id_bytes) != pairs[i]) r.fail("deltas out of order");
      uint32_t raw = r.u32le(), len = r.u32le();
      if (len == 0xffffffffu || raw > store::k_max_chunk) {
        need.push_back(pairs[i]);
        continue;
      }
      auto frame = r.raw(len);
      if (!read_local(pairs[i + 1], base)) {
        need.push_back(pairs[i]);
        continue;
      }
      std::vector<uint8_t> plain(raw);
      util::zstd_decompress_delta(frame, base, plain);
      if (util::sha256(plain) != pairs[i])
        throw Error(ErrorKind::integrity, "chunk " + pairs[i].hex() + ": its delta does not rebuild it");
      m_result.bytes_delta += len;
      m_plain.emplace(pairs[i], std::move(plain));
    }
  }

  /// Fills m_buf with chunk `c`: from the endpoint's own files when it has it, else
  /// rebuilt from a delta, else the store.
  void read_chunk(const tree::ChunkRef& c, const std::unordered_map<Digest, store::Record, util::DigestHash>& records,
                  const std::string& path) {
    if (read_local(c.id, m_buf)) {
      m_result.bytes_local += c.size;
      return;
    }
    m_buf.resize(c.size);
    if (auto p = m_plain.find(c.id); p != m_plain.end() && p->second.size() == c.size) {
      std::copy(p->second.begin(), p->second.end(), m_buf.begin());
      m_result.bytes_fetched += c.size;
      return;
    }
    auto rec = records.find(c.id);
    if (rec == records.end()) {
      // Expected locally but changed since the scan: fetch it alone.
      auto blob = m_source.records(std::span(&c.id, 1));
      store::RecordReader reader(blob, path);
      auto r = reader.next();
      if (!r || r->id != c.id) throw Error(ErrorKind::integrity, path + ": chunk " + c.id.hex() + " is missing from the store");
      store::open_record_into(*r, m_buf, path);
    } else {
      if (rec->second.raw_size != c.size) throw Error(ErrorKind::integrity, path + ": chunk " + c.id.hex() + " has the wrong size");
      store::open_record_into(rec->second, m_buf, path);
    }
    m_result.bytes_fetched += c.size;
  }

  const Plan& m_plan;
  const Flat& m_e;  ///< the endpoint as scanned
  materialize::ObjectSource& m_source;
  const ApplyOptions& m_opts;
  Dirs m_dirs;
  json m_staging;  ///< the journal while staging
  std::string m_token;
  /// Where E holds each chunk: its file (a key of m_e), offset and size.
  struct LocalChunk {
    const std::string* path;
    uint64_t offset, size;
  };
  std::unordered_multimap<Digest, LocalChunk, util::DigestHash> m_local;
  std::unordered_map<std::string, size_t> m_op_index;  ///< plan op by path
  std::map<size_t, std::string> m_tmp;
  std::set<size_t> m_linked;
  std::set<size_t> m_placeholder;  ///< ops staged as placeholders (ApplyOptions::placeholder)
  std::vector<uint8_t> m_buf;
  std::unordered_map<Digest, std::vector<uint8_t>, util::DigestHash> m_plain;  ///< rebuilt from deltas
  util::Fd m_open;
  std::string m_open_path;
  ApplyResult m_result;
};

}  // namespace

void to_json(json& j, const ApplyResult& r) {
  j = {{"written", r.written},         {"metadata", r.metadata},       {"removed", r.removed},
       {"merged", r.merged},           {"saved_local", r.saved_local}, {"kept_not_empty", r.kept_not_empty},
       {"linked", r.linked},           {"bytes_local", r.bytes_local}, {"bytes_fetched", r.bytes_fetched},
       {"bytes_delta", r.bytes_delta}, {"placeholders", r.placeholders.size()},
       {"warnings", r.warnings},       {"stage_seconds", r.stage_seconds},
       {"commit_seconds", r.commit_seconds}};
}

std::vector<std::optional<Digest>> delta_bases(std::span<const tree::ChunkRef> before,
                                               std::span<const tree::ChunkRef> after) {
  constexpr uint64_t k_min_base = 1024;  // a smaller base saves less than its pair of ids costs
  std::vector<uint64_t> at_before(before.size() + 1, 0), at_after(after.size() + 1, 0);  // offsets
  for (size_t i = 0; i < before.size(); ++i) at_before[i + 1] = at_before[i] + before[i].size;
  for (size_t j = 0; j < after.size(); ++j) at_after[j + 1] = at_after[j] + after[j].size;
  std::unordered_map<Digest, size_t, util::DigestHash> index;  // first place of each chunk in `before`
  for (size_t i = 0; i < before.size(); ++i) index.emplace(before[i].id, i);
  // Anchors: chunks of `after` found in `before`, kept only while their places in
  // `before` increase (a moved or repeated chunk does not anchor).
  constexpr size_t none = SIZE_MAX;
  std::vector<size_t> anchor(after.size(), none);
  for (size_t j = 0, last = none; j < after.size(); ++j)
    if (auto it = index.find(after[j].id); it != index.end() && (last == none || it->second > last))
      anchor[j] = last = it->second;
  // For each chunk, the anchor before it (scanning forward) and after it (backward).
  std::vector<size_t> prev(after.size(), none), next(after.size(), none);
  for (size_t j = 0, a = none; j < after.size(); ++j) {
    prev[j] = a;
    if (anchor[j] != none) a = j;
  }
  for (size_t j = after.size(), a = none; j-- > 0;) {
    next[j] = a;
    if (anchor[j] != none) a = j;
  }
  std::vector<std::optional<Digest>> out(after.size());
  for (size_t j = 0; j < after.size(); ++j) {
    if (anchor[j] != none) continue;  // shared: the endpoint has it whole
    // The stretch of `before` between the anchors around chunk j, and of `after`.
    size_t lo = prev[j] == none ? 0 : anchor[prev[j]] + 1;
    size_t hi = next[j] == none ? before.size() : anchor[next[j]];
    if (lo >= hi) continue;  // nothing of `before` was replaced here: new bytes
    uint64_t new_from = prev[j] == none ? 0 : at_after[prev[j] + 1];
    uint64_t new_to = next[j] == none ? at_after[after.size()] : at_after[next[j]];
    uint64_t old_from = at_before[lo], old_to = at_before[hi];
    // Chunk j placed in the old stretch: its start at the same distance from the
    // stretch's start when the stretch ends the file (bytes appended there), its end at
    // the same distance from the stretch's end when it starts the file (bytes
    // prepended), else its start at the same fraction of the stretch.
    uint64_t pos;
    if (next[j] == none) {
      pos = old_from + (at_after[j] - new_from);
      if (pos >= old_to) continue;  // past the old end: appended bytes
    } else if (prev[j] == none) {
      uint64_t back = new_to - at_after[j + 1];  // from its end
      if (back >= old_to - old_from) continue;   // before the old start: prepended bytes
      pos = old_to - back - 1;
    } else {
      uint64_t span_new = std::max<uint64_t>(new_to - new_from, 1);
      pos = old_from +
            static_cast<uint64_t>(static_cast<long double>(at_after[j] - new_from) * (old_to - old_from) / span_new);
    }
    size_t i = static_cast<size_t>(std::upper_bound(at_before.begin() + lo + 1, at_before.begin() + hi + 1, pos) -
                                   at_before.begin()) - 1;
    i = std::clamp(i, lo, hi - 1);
    if (before[i].size >= k_min_base) out[j] = before[i].id;
  }
  return out;
}

ApplyResult apply(const Plan& plan, const Flat& e, materialize::ObjectSource& source, const ApplyOptions& options) {
  if (fs::exists(options.journal))
    throw Error(ErrorKind::precondition, "an interrupted apply must be recovered first (" + options.journal.string() + ")");
  return Applier(plan, e, source, options).run();
}

std::string recover(const fs::path& root, const fs::path& journal_file) {
  if (!fs::exists(journal_file)) return "none";
  json journal;
  try {
    journal = json::parse(util::read_file(journal_file));
  } catch (const json::exception& e) {
    throw Error(ErrorKind::integrity, "apply journal " + journal_file.string() + ": " + e.what());
  }
  std::string state = journal.value("state", "");
  bool hex = hex_names(journal);
  if (state == "staging") {
    Dirs dirs(root);
    for (const auto& t : journal.at("temps")) {
      std::string p = name_in(t, hex);
      dirs.trim();
      try {
        ::unlinkat(dirs.get(parent_path(p)), base_name(p).c_str(), 0);
      } catch (const Error&) {
        // Its directory was never made.
      }
    }
    std::vector<std::string> made;
    for (const auto& d : journal.at("dirs")) made.push_back(name_in(d, hex));
    std::sort(made.rbegin(), made.rend());
    for (const auto& d : made) {
      dirs.trim();
      try {
        ::unlinkat(dirs.get(parent_path(d)), base_name(d).c_str(), AT_REMOVEDIR);  // only when empty
      } catch (const Error&) {
      }
      dirs.forget(d);
    }
    // What staging set aside (a file where the layer has a directory) goes back, the
    // directory made in its place being gone (removed above when empty).
    auto aside = journal.value("set_aside", json::array());
    for (auto it = aside.rbegin(); it != aside.rend(); ++it) {
      std::string path = name_in(it->at(0), hex), local = name_in(it->at(1), hex);
      dirs.trim();
      try {
        int dirfd = dirs.get(parent_path(path));
        if (exists_at(dirfd, local) && !exists_at(dirfd, base_name(path)))
          ::renameat(dirfd, local.c_str(), dirfd, base_name(path).c_str());
      } catch (const Error&) {
      }
    }
    // Then the directories staging wrote in get their times back, deepest first (setting
    // a directory's times does not change its parent's).
    auto times = journal.value("dir_times", json::array());
    for (auto& t : times) t[0] = name_in(t.at(0), hex);  // (a JSON string holds any bytes until dumped)
    std::sort(times.begin(), times.end(), [](const json& a, const json& b) { return a.at(0) > b.at(0); });
    for (const auto& t : times) {
      dirs.trim();
      auto ns = [](int64_t v) { return timespec{static_cast<time_t>(v / 1000000000), static_cast<long>(v % 1000000000)}; };
      timespec ts[2] = {ns(t.at(1).get<int64_t>()), ns(t.at(2).get<int64_t>())};
      try {
        ::futimens(dirs.get(t.at(0).get<std::string>()), ts);
      } catch (const Error&) {
        // Gone or replaced since: nothing to set back.
      }
    }
    fs::remove(journal_file);
    return "rolled_back";
  }
  if (state == "commit") {
    finish_commit(root, journal, nullptr, nullptr);
    fs::remove(journal_file);
    return "resumed";
  }
  throw Error(ErrorKind::integrity, "apply journal " + journal_file.string() + ": unknown state '" + state + "'");
}

std::vector<HookResult> run_hooks(const fs::path& root, const std::string& hooks_dir) {
  std::vector<HookResult> out;
  fs::path dir = root / hooks_dir.substr(1);
  std::error_code ec;
  auto dir_status = fs::symlink_status(dir, ec);
  if (fs::is_symlink(dir_status)) util::warn("hooks: " + hooks_dir + " is a symbolic link: not followed, no hook run");
  if (!fs::is_directory(dir_status)) return out;
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    auto st = entry.symlink_status();
    if (fs::is_symlink(st))  // it could point anywhere (out of the root): only files in the directory run
      util::warn("hooks: " + hooks_dir + "/" + entry.path().filename().string() + " is a symbolic link: not run");
    if (!fs::is_regular_file(st)) continue;
    if ((st.permissions() & fs::perms::owner_exec) == fs::perms::none) continue;
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  bool real_root = fs::equivalent(root, "/", ec);
  for (const auto& name : names) {
    util::SpawnOptions so;
    so.argv = {hooks_dir + "/" + name};
    so.env = {{"PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, {"MIRAGE_ROOT", root.string()}};
    if (!real_root) so.chroot = root;
    so.out = util::SpawnOptions::Stream::to_stderr;
    try {
      out.push_back({name, util::spawn(so).wait()});  // 127 when it could not be run
    } catch (const Error&) {
      out.push_back({name, -1});
    }
  }
  return out;
}

}  // namespace mirage::layer
