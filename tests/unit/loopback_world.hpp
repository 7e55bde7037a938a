#pragma once
// A server's data directory in a temporary directory, its Service in this process, and
// clients that reach it over the in-process loopback transport: the unit tests' server.
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>

#include "libmirage/client/client.hpp"
#include "libmirage/server/loopback.hpp"
#include "libmirage/server/service.hpp"

namespace mirage::test {

struct LoopbackWorld {
  std::filesystem::path dir;
  std::string admin_token;
  std::unique_ptr<server::Service> service;
  LoopbackWorld() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "mirage-loopback-XXXXXX").string();
    dir = ::mkdtemp(tmpl.data());
    admin_token = server::init_data_dir(dir / "data");
    service = std::make_unique<server::Service>(dir / "data", false);
  }
  ~LoopbackWorld() {
    service.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  client::Client client(const std::string& token) {
    return client::Client(std::make_unique<server::LoopbackTransport>(*service, token));
  }
};

}  // namespace mirage::test
