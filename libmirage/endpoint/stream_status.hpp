#pragma once
// A streaming restore's status file: where it stands (its stage, files and bytes done
// and left), kept on the machine that restores, for `mirage-restore status` to read while
// the restore runs and after it stopped. Two writers keep one: mirage-restore --to DIR
// --stream (restore_status_file) and a streamed revert's fill on the device
// (revert_status_file, in the endpoint's state directory; revert.hpp: fill_streamed).
//
// Its fields: "device_id", "snapshot_id", "to" (the tree restored into), "pid" (the
// process that writes it), "stage" (staging, minimal-set, filling, done, failed),
// "started", "usable", "finished" (RFC 3339), "on_demand" (and "on_demand_why_not"),
// "progress" (materialize/stream.hpp's StreamProgress), "kind" ("to" or "on-device").
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

namespace mirage::endpoint {

/// DATA_DIR/restore/DEVICE.json: a --to DIR --stream restore of `device` on this machine.
std::filesystem::path restore_status_file(const std::string& device);
/// STATE_DIR/stream-status.json: a streamed revert's fill on the device.
std::filesystem::path revert_status_file(const std::filesystem::path& state_dir);

/// Writes `doc` to `file` whole (atomically, mode 0600), making its directory.
void write_stream_status(const std::filesystem::path& file, const nlohmann::json& doc);

/// The status file as `status` shows it: stage "interrupted" when the process that
/// wrote it is gone before it was done or failed (run the restore again, or sync, to go
/// on); progress with "files_left" and "bytes_left" added. A file that is not what
/// write_stream_status() writes (cut short, edited, another program's) is
/// {"stage": "damaged", "file", "error"}, with why, never a JSON library's message or a
/// kill(2) of a bogus pid.
nlohmann::json read_stream_status(const std::filesystem::path& file);

}  // namespace mirage::endpoint
