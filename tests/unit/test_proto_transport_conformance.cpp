// Transport conformance: one template run over every transport a client may use — the
// in-process loopback, a spawned `mirage-serverd --stdio` (local: with a server program
// named), local: served in this process (the commands' default), and HTTP on
// 127.0.0.1 served in this process on a port the kernel picks. The same calls must give
// the same replies and the same error kinds: not found, malformed, body too large, and
// (where the transport carries tokens) authentication refused. Each server has
// upload-body lowered to 1 MiB.
#include <doctest/doctest.h>
#include <signal.h>
#include <stdlib.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include "cmd/common/tool.hpp"
#include "libmirage/client/client.hpp"
#include "libmirage/proto/transport.hpp"
#include "libmirage/server/loopback.hpp"
#include "libmirage/server/routes.hpp"
#include "libmirage/server/service.hpp"
#include "libmirage/store/record.hpp"
#include "libmirage/util/digest.hpp"
#include "tests/unit/check_error.hpp"

#ifndef MIRAGE_SERVERD_PATH
#error "CMake passes MIRAGE_SERVERD_PATH (the built mirage-serverd) to the unit tests"
#endif

using namespace mirage;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* k_limit = "upload-body=1M";

/// A data directory (initialized; its admin token kept), removed at the end.
struct DataDir {
  fs::path dir;
  std::string admin_token;
  DataDir() {
    std::string tmpl = (fs::temp_directory_path() / "mirage-conformance-XXXXXX").string();
    dir = ::mkdtemp(tmpl.data());
    admin_token = server::init_data_dir(dir / "data");
  }
  ~DataDir() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  fs::path data() const { return dir / "data"; }
  static server::Limits limits() {
    server::Limits l;
    l.set(k_limit, tool::parse_size);
    return l;
  }
};

struct Loopback : DataDir {
  static constexpr bool carries_tokens = true;
  server::Service service{data(), false, limits()};
  client::Client admin() { return as(admin_token); }
  client::Client as(const std::string& token) {
    return client::Client(std::make_unique<server::LoopbackTransport>(service, token));
  }
};

/// local: is the machine's own store: no token, the caller is its admin.
struct Stdio : DataDir {
  static constexpr bool carries_tokens = false;
  fs::path exe = dir / "serverd-with-limit";
  Stdio() {
    ::signal(SIGPIPE, SIG_IGN);  // as cmd/ does for local:
    std::ofstream(exe) << "#!/bin/sh\nexec '" << MIRAGE_SERVERD_PATH << "' \"$@\" --limit " << k_limit << "\n";
    fs::permissions(exe, fs::perms(0755));
  }
  client::Client admin() {
    proto::ConnectOptions o;
    o.server = "local:" + data().string();
    o.serverd_exe = exe.string();
    return client::Client(proto::connect(o));
  }
  client::Client as(const std::string&) { return admin(); }
};

/// local: served in this process (the commands' default): no token either.
struct InProcess : DataDir {
  static constexpr bool carries_tokens = false;
  client::Client admin() { return client::Client(server::open_in_process(data(), limits())); }
  client::Client as(const std::string&) { return admin(); }
};

struct Http : DataDir {
  static constexpr bool carries_tokens = true;
  server::Service service{data(), false, limits()};
  std::mutex mutex;
  std::condition_variable ready;
  std::string where, failed;
  std::function<void()> stop;
  std::thread thread;
  Http() {
    server::HttpOptions h;
    h.host = "127.0.0.1";
    h.port = 0;
    h.threads = 2;
    h.max_connections = 8;
    h.gc_interval = 0;
    h.on_stop = [this](std::function<void()> s) {
      std::lock_guard lock(mutex);
      if (s) stop = std::move(s);
    };
    h.on_listen = [this](const std::string& w) {
      std::lock_guard lock(mutex);
      where = w;
      ready.notify_all();
    };
    thread = std::thread([this, h] {
      try {
        server::serve_http(service, h, server::default_routes(service, h));
      } catch (const std::exception& e) {
        std::lock_guard lock(mutex);
        failed = e.what();
        ready.notify_all();
      }
    });
    std::unique_lock lock(mutex);
    ready.wait(lock, [&] { return !where.empty() || !failed.empty(); });
    REQUIRE(failed.empty());
  }
  ~Http() {
    {
      std::lock_guard lock(mutex);
      if (stop) stop();
    }
    thread.join();
  }
  client::Client admin() { return as(admin_token); }
  client::Client as(const std::string& token) {
    proto::ConnectOptions o;
    o.server = "http://" + where;
    o.token = token;
    return client::Client(proto::connect(o));
  }
};

std::vector<uint8_t> random_bytes(size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::vector<uint8_t> out(n);
  for (auto& b : out) b = static_cast<uint8_t>(gen());
  return out;
}

}  // namespace

TEST_SUITE_BEGIN("transport conformance");

TEST_CASE_TEMPLATE("the same calls give the same replies", T, Loopback, Stdio, InProcess, Http) {
  T server;
  auto admin = server.admin();
  CHECK(admin.call("device.register", {{"device_id", "conf-1"}, {"hostname", "conf-1"}})["state"] == "pending");
  CHECK(admin.call("device.accept", {{"device_id", "conf-1"}})["state"] == "accepted");
  json set = admin.call("collection.set", {{"name", "c1"}, {"device_ids", {"conf-1"}}});
  CHECK(set == json{{"name", "c1"}, {"kind", "static"}, {"spec", {{"devices", {"conf-1"}}}}, {"members", {"conf-1"}}});
  CHECK(admin.call("collection.get", {{"name", "c1"}}) == set);
  // Text that is not UTF-8 (a Latin-1 string in an inventory) arrives as the wire carries
  // it, U+FFFD for each byte that is not, whatever the transport (in process too: there is
  // no wire there to clean it, and the server's own dumps would throw on it).
  admin.call("device.register", {{"device_id", "conf-2"}, {"inventory", {{"owner", "r\xe9sum\xe9"}}}});
  std::string owner;
  json devices = admin.call("device.list")["devices"];
  for (const auto& d : devices)
    if (d["device_id"] == "conf-2") owner = d["inventory"].value("owner", "");
  CHECK(owner == "r\xef\xbf\xbdsum\xef\xbf\xbd");

  // Chunks: missing, stored, then present and read back as sent (the binary part, both ways).
  auto plain = random_bytes(100000, 7);
  util::Digest id = util::sha256(std::span<const uint8_t>(plain));
  std::vector<util::Digest> ids = {id};
  CHECK(client::chunks_missing(admin, ids) == std::vector<bool>{true});
  std::vector<uint8_t> records;
  store::append_plain(records, id, plain, 3);
  client::chunks_put(admin, "", records);
  CHECK(client::chunks_missing(admin, ids) == std::vector<bool>{false});
  auto back = client::chunks_get(admin, ids);
  auto record = store::parse_record(back, "chunks.get");
  CHECK(record.id == id);
  CHECK(store::open_record(record, "chunks.get") == plain);
}

TEST_CASE_TEMPLATE("the same refusals give the same error kinds", T, Loopback, Stdio, InProcess, Http) {
  T server;
  auto admin = server.admin();
  // Not found.
  CHECK_ERROR_KIND(admin.call("collection.get", {{"name", "no-such"}}), ErrorKind::not_found);
  CHECK_ERROR_KIND(admin.call("snapshot.list", {{"device_id", "no-such"}}), ErrorKind::not_found);
  // Malformed: an unknown method, a parameter of the wrong type.
  CHECK_ERROR_KIND(admin.call("no.such.method"), ErrorKind::usage);
  CHECK_ERROR_KIND(admin.call("collection.get", {{"name", 5}}), ErrorKind::usage);
  // A body over the server's upload-body limit (1 MiB here): refused as usage, and the
  // connection still serves the next call.
  auto plain = random_bytes(1536 * 1024, 9);
  std::vector<uint8_t> records;
  store::append_plain(records, util::sha256(std::span<const uint8_t>(plain)), plain, 3);
  REQUIRE(records.size() > 1024 * 1024);
  CHECK_ERROR_KIND(client::chunks_put(admin, "", records), ErrorKind::usage);
  CHECK(admin.call("collection.list").contains("collections"));
  // Authentication refused (transports that carry a token).
  if constexpr (T::carries_tokens) {
    auto stranger = server.as("mat_not-a-token");
    CHECK_ERROR_KIND(stranger.call("server.info"), ErrorKind::permission);
    auto anonymous = server.as("");
    CHECK_ERROR_KIND(anonymous.call("token.list"), ErrorKind::permission);
  }
}

TEST_CASE("local: is served in process, unless a server program is named (ConnectOptions, MIRAGE_SERVERD)") {
  DataDir d;
  std::string saved = std::getenv("MIRAGE_SERVERD") ? std::getenv("MIRAGE_SERVERD") : "";
  ::unsetenv("MIRAGE_SERVERD");
  int opened = 0;
  proto::ConnectOptions o;
  o.server = "local:" + d.data().string();
  o.in_process = [&](const std::string& dir) {
    opened++;
    return server::open_in_process(dir);
  };
  {
    auto a = client::Client(proto::connect(o));
    auto b = client::Client(proto::connect(o));
    CHECK(opened == 2);
    CHECK(a.call("device.register", {{"device_id", "shared"}})["state"] == "pending");
    CHECK(b.call("device.list")["devices"].size() == 1);
  }
  ::signal(SIGPIPE, SIG_IGN);  // as cmd/ does for local:
  o.serverd_exe = MIRAGE_SERVERD_PATH;
  auto spawned = client::Client(proto::connect(o));
  CHECK(opened == 2);
  CHECK(spawned.call("device.list")["devices"].size() == 1);
  o.serverd_exe.clear();
  ::setenv("MIRAGE_SERVERD", MIRAGE_SERVERD_PATH, 1);
  auto by_env = client::Client(proto::connect(o));
  CHECK(opened == 2);
  CHECK(by_env.call("device.list")["devices"].size() == 1);
  if (saved.empty())
    ::unsetenv("MIRAGE_SERVERD");
  else
    ::setenv("MIRAGE_SERVERD", saved.c_str(), 1);
}

TEST_SUITE_END();
