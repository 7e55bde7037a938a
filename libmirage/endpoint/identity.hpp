#pragma once
// Who this endpoint is: its device id, its inventory (what driver profiles and
// collections match), its credential and its private state directory.
#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace mirage::endpoint {

/// DMI product UUID (only when `root` is the real root), else ROOT/etc/machine-id
/// (lowercased); nullopt if neither. The machine-id is read without leaving ROOT (see
/// inventory); one that is not 32 hex digits throws Error(usage), as it names the
/// endpoint's state directory.
std::optional<std::string> detect_device_id(const std::filesystem::path& root);
/// Throws Error(usage) unless `id` is a valid device id (letters, digits, - _ . :, at
/// most 128, not "." or ".."): it names a directory under the endpoint's data dir.
void check_device_id(const std::string& id);
/// Hostname, OS release, architecture, the free bytes of the filesystem holding ROOT
/// ("root_free_bytes") and (for the real root) DMI fields. Files under
/// ROOT are opened without leaving it (symlinks resolve inside ROOT), and only small
/// regular files are read: a FIFO, a device or a huge file is skipped with a warning.
nlohmann::json inventory(const std::filesystem::path& root, std::string* hostname);

/// The device's credential secret (64 hex digits) in STATE/credential, made on first use
/// (mode 0600). The server keeps its SHA-256; once the device is accepted, the bearer
/// token mdc_DEVICE.SECRET lets it sync its own CVD and nothing else.
std::string device_secret(const std::filesystem::path& state_dir);

/// Creates the endpoint state directory if needed and makes it and the files in it
/// private (0700, its own files 0600: file names in trees.db, the credential). Throws
/// Error(usage) for a shared directory (world-writable or sticky, e.g. /tmp), a symbolic
/// link, another user's, or one holding other files and no endpoint state (--state /etc);
/// else Error(failed).
void make_state_private(const std::filesystem::path& state_dir);

/// True when `root` is the running system's "/" (then DMI, PCI and swaps are read).
bool is_real_root(const std::filesystem::path& root);

}  // namespace mirage::endpoint
