#pragma once
// mirage-restore mount: a device's snapshots as a read-only FUSE filesystem (libfuse3's
// low-level API over libmirage/mount's Filesystem). Runs in the foreground until
// SIGINT, SIGTERM or SIGHUP (libfuse's own handlers, installed here in cmd/) or an
// outside `fusermount3 -u`, and unmounts before it returns.
#include <string>

#include "cmd/common/tool.hpp"

namespace mirage::restore_cmd {

struct MountOptions {
  std::string device;
  std::string snapshot;  ///< empty: every snapshot; else that one at the root
  std::string mountpoint;
  bool allow_other = false;
  bool debug = false;  ///< libfuse's request log on stderr
};

int mount(const tool::Common& common, const MountOptions& options);

}  // namespace mirage::restore_cmd
