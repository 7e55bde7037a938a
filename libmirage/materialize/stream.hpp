#pragma once
// Streaming restore: a whole tree is usable before its bytes are all there.
//
// The restore writes a minimal set whole and every other regular file as a placeholder
// (restorer.hpp: RestoreOptions::placeholder): its final size as a hole, its final
// owner, mode, xattrs and times, and the xattr `user.mirage.placeholder`. A Streamer
// then fills the placeholders in the background, in rank order (the caller's: the user
// area first) and newest first within a rank; a program that reads a placeholder gets
// it filled first. Where the kernel gives fanotify pre-content events (Linux 6.14 on
// ext4, xfs, btrfs: util/fanotify.hpp) its read waits until the bytes it asks for are
// in the file: the chunks that cover the read's range are fetched and written first,
// the read goes on, and the rest of the file follows (the next read waits for its own
// range). An access the kernel gives no range for, and any access to a file with file
// capabilities or a setuid/setgid bit (a write drops them until the metadata is set
// again), waits until the whole file and its metadata are in place. Where the kernel
// has no pre-content events, a read sees zeros until the background fill reaches the
// file (on_demand() is false and why_not() says why).
//
// A file is filled in place (a reader may hold it open), given its metadata again (a
// write drops file capabilities), made durable, and only then loses the mark: reads are
// answered from the page cache before the fsync, but a placeholder never looks
// complete, and a restore run again after a kill refills exactly the files still marked.
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "libmirage/materialize/metadata.hpp"
#include "libmirage/materialize/restorer.hpp"
#include "libmirage/store/record.hpp"
#include "libmirage/tree/tree.hpp"
#include "libmirage/util/fanotify.hpp"

namespace mirage::materialize {

inline constexpr const char* k_placeholder_xattr = tree::k_placeholder_xattr;
/// Marks the open file `fd` as a placeholder; throws naming `path`.
void mark_placeholder(int fd, const std::string& path);
/// True when the open file `fd` carries the placeholder mark.
bool is_placeholder(int fd);
/// Makes the new, empty regular file `fd` (at `path`) the placeholder
/// of `e`: its final size as a hole, the mark, then its final metadata (the restorer's
/// and a streamed revert's staging, layer/apply.hpp). Throws naming `path`.
void make_placeholder_fd(int fd, const tree::Entry& e, const std::string& path, const Warn& warn);

struct StreamProgress {
  uint64_t files_done = 0, files_total = 0, bytes_done = 0, bytes_total = 0;
  uint64_t on_demand = 0;  ///< files filled first because a program read them
  uint64_t wire_bytes = 0;
};
void to_json(nlohmann::json& j, const StreamProgress& p);

class Streamer {
 public:
  struct Options {
    std::filesystem::path to;  ///< the restore's target
    /// A source per filling thread (two: the background and the on-demand one).
    std::function<std::unique_ptr<ObjectSource>()> source;
    /// Lower ranks are filled first (e.g. 0 for the user area, 1 for the rest).
    std::function<int(const std::string& path, const tree::Entry&)> rank;
    uint64_t bytes_per_second = 0;  ///< the background fill's limit (0: none); reads are never held back
    std::function<void(const StreamProgress&)> progress;
  };
  explicit Streamer(Options options);
  ~Streamer();
  Streamer(const Streamer&) = delete;
  Streamer& operator=(const Streamer&) = delete;

  /// Whether a read of a placeholder waits for its content; why not, when not.
  bool on_demand() const { return m_on_demand; }
  const std::string& why_not() const { return m_why_not; }

  /// RestoreOptions::on_placeholder: takes the placeholder `name` in `dirfd` (at `path`
  /// in the target) to fill.
  void add(int dirfd, const std::string& name, const std::string& path, const tree::Entry& entry);
  /// Fills every placeholder added; returns when all are filled. A file that cannot be
  /// filled stays a placeholder, and the first such error is thrown after the rest were
  /// tried. A file changed at the target since it was made (no longer a placeholder of
  /// its size) is left as it is, with a warning; one a user moved (it or a directory
  /// above it) is filled where it is now, with a warning.
  StreamProgress fill();
  std::vector<std::string> warnings() const;
  /// The progress so far (files and bytes of every placeholder added, and done).
  StreamProgress progress() const;

 private:
  struct Item {
    std::string path;
    tree::Entry entry;
    dev_t dev = 0;  ///< the placeholder the restore made: only that inode is filled
    ino_t ino = 0;
    int rank = 0;
    enum class State { pending, filling, done, failed } state = State::pending;
    std::vector<util::PreContentGroup::Event> waiting;  ///< reads held until their bytes are in
    /// Per chunk, once its fill began: whether it is in the file; and where it starts.
    std::vector<char> written;
    std::vector<uint64_t> starts;
    bool readable = false;  ///< every byte and the metadata in place (durable or not)
    std::string handle;     ///< its file handle (name_to_handle_at), to find it when moved
    int mount_id = 0;
    bool read_on_demand = false;
  };
  using Event = util::PreContentGroup::Event;
  /// Whether `ev` may go on now (under m_mutex): its bytes of `item` are in the file.
  static bool covered(const Item& item, const Event& ev);
  /// The next chunks of `item` to write, [first, last): from the first unwritten one a
  /// read waits for, else the first unwritten one, then on while unwritten, up to
  /// `limit` bytes (more to cover a waiting read's range, up to `cap`).
  static std::pair<size_t, size_t> next_chunks(Item& item, uint64_t limit, uint64_t cap);
  /// Lets the reads of `item` go on whose bytes are in (all when it is readable).
  void answer_covered(Item& item);
  bool claim(Item& item);
  static bool ours(int fd, const Item& item);
  /// The placeholder of `item` open for writing, with its directory and name: at its
  /// path, or where a user moved it (found by its handle, with a warning); no fd when it
  /// is gone or no longer the placeholder the restore made.
  util::Fd open_item(const Item& item, util::Fd& dir, std::string& name);
  using Records = std::unordered_map<Digest, store::Record, util::DigestHash>;
  /// Fills `items` (claimed), fetching their chunks in one call when they are small.
  void fill_batch(const std::vector<Item*>& items, ObjectSource& source);
  void fill_item(Item& item, ObjectSource& source, bool background, const Records* fetched = nullptr);
  util::Fd write_item(Item& item, ObjectSource& source, bool background, const Records* fetched);
  void finish_item(Item& item, int fd);
  void record_error(std::exception_ptr error);
  /// Writes the chunks of `item` not in the file yet, those a read waits for first;
  /// false when the reads' filler stopped to serve a read of another file.
  bool write_content(Item& item, int fd, ObjectSource& source, bool background, const Records* fetched);
  /// The background fill's rate limit, taken before `bytes` are fetched: waits until
  /// they are due (or a read of `item` waits, or the stream stops).
  void throttle(uint64_t bytes, Item* item);
  /// The most the background fill asks for at once (smaller under a rate limit).
  uint64_t batch_bytes() const;
  void listen();
  void serve_reads();
  void report();

  Options m_opts;
  std::optional<util::PreContentGroup> m_group;
  bool m_on_demand = false;  ///< every placeholder so far took the mark
  std::mutex m_report_mutex;  ///< one progress call at a time
  std::string m_why_not;
  util::Fd m_stop;  ///< an eventfd: the listener's stop signal

  mutable std::mutex m_mutex;
  std::condition_variable m_changed;
  std::vector<std::unique_ptr<Item>> m_items;
  std::map<std::pair<dev_t, ino_t>, Item*> m_by_inode;
  std::map<int, util::Fd> m_mounts;  ///< per mount id, a directory there (open_by_handle_at)
  std::deque<Item*> m_urgent;
  bool m_stopping = false;
  std::exception_ptr m_error;
  StreamProgress m_progress;
  std::vector<std::string> m_warnings;
  std::unique_ptr<ObjectSource> m_reader_source;
  std::chrono::steady_clock::time_point m_bucket_time;  ///< the rate limit's bucket, as of then
  double m_tokens = 0;                                  ///< bytes it may fetch now (negative: owed)
  std::thread m_listener, m_reader;
};

}  // namespace mirage::materialize
