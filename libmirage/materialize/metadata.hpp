#pragma once
// Setting an entry's metadata and making non-file entries, relative to a directory fd
// and never through a symlink. Shared by restores and layer applies.
//
// Order per entry: owner (only as root), mode (after chown, which clears setuid),
// xattrs (capabilities after chown), times. Without root, an xattr that cannot be set
// is a warning rather than an error.
#include <ctime>
#include <functional>
#include <string>

#include "libmirage/tree/tree.hpp"

namespace mirage::materialize {

using Warn = std::function<void(std::string)>;

timespec timespec_of(int64_t ns);
/// True when this process may chown (and so must set every xattr).
bool running_as_root();

/// Owner, mode, xattrs and times of `e` on `name` in `dirfd` (not followed if a symlink),
/// through a handle on what is there: Error(precondition) when it is not of e's kind, or
/// (`made_here`: this process just made it) has another owner or a second name.
void set_metadata(int dirfd, const std::string& name, const tree::Entry& e, const std::string& path, const Warn& warn,
                  bool made_here = false);
/// The same for an open file or directory (everything through the fd).
void set_metadata_fd(int fd, const tree::Entry& e, const std::string& path, const Warn& warn);
/// Creates a symlink, device node, fifo or socket `name` in `dirfd` (mode 0600 until
/// set_metadata). Throws naming `path`.
void make_node(int dirfd, const std::string& name, const tree::Entry& e, const std::string& path);

}  // namespace mirage::materialize
