#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "libmirage/layer/apply.hpp"

using namespace mirage;
namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// Copies /bin/sh and the libraries it loads (as ldd lists them) into `root`.
bool install_sh(const fs::path& root) {
  std::vector<fs::path> files = {"/bin/sh"};
  FILE* p = ::popen("ldd /bin/sh", "r");
  if (!p) return false;
  char line[512];
  while (std::fgets(line, sizeof line, p)) {
    std::string s(line);
    auto slash = s.find('/');
    if (slash == std::string::npos) continue;
    s = s.substr(slash);
    s = s.substr(0, s.find_first_of(" \n("));
    files.push_back(s);
  }
  ::pclose(p);
  for (const auto& f : files) {
    fs::path real = fs::canonical(f);
    fs::create_directories(root / f.relative_path().parent_path());
    fs::copy_file(real, root / f.relative_path(), fs::copy_options::overwrite_existing);
    fs::permissions(root / f.relative_path(), fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  }
  return true;
}

void write_hook(const fs::path& root, const std::string& name, const std::string& text, bool executable = true) {
  fs::path dir = root / "etc/mirage/post-layer.d";
  fs::create_directories(dir);
  std::ofstream(dir / name) << text;
  fs::permissions(dir / name, executable ? fs::perms::owner_all : fs::perms::owner_read | fs::perms::owner_write);
}

}  // namespace

TEST_SUITE_BEGIN("layer::run_hooks");

TEST_CASE("hooks run in name order in a chroot of the root, with PATH and MIRAGE_ROOT, output on stderr") {
  if (::geteuid() != 0) {
    MESSAGE("needs root (chroot): skipped");
    return;
  }
  std::string tmpl = (fs::temp_directory_path() / "mirage-hooks-XXXXXX").string();
  fs::path root = ::mkdtemp(tmpl.data());
  REQUIRE(install_sh(root));
  fs::create_directories(root / "out");
  write_hook(root, "20-second", "#!/bin/sh\necho second >>/out/order\nexit 3\n");
  write_hook(root, "10-first",
             "#!/bin/sh\necho first >>/out/order\necho \"$MIRAGE_ROOT\" >/out/root\necho \"$PATH\" >/out/path\n"
             "pwd >/out/pwd\necho on-stdout\n");
  write_hook(root, "30-not-executable", "#!/bin/sh\necho no >>/out/order\n", false);
  write_hook(root, "40-no-interpreter", "#!/nonexistent/sh\n");
  // Catch our stderr: a hook's stdout goes there (stdout carries data only).
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  int saved_out = ::dup(1), saved_err = ::dup(2);
  int devnull_out[2];
  REQUIRE(::pipe(devnull_out) == 0);
  ::dup2(fds[1], 2);
  ::dup2(devnull_out[1], 1);
  ::close(fds[1]);
  ::close(devnull_out[1]);
  auto results = layer::run_hooks(root);
  ::dup2(saved_out, 1);
  ::dup2(saved_err, 2);
  ::close(saved_out);
  ::close(saved_err);
  auto drain = [](int fd) {
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    ::close(fd);
    return out;
  };
  std::string err = drain(fds[0]);
  std::string out = drain(devnull_out[0]);
  REQUIRE(results.size() == 3);
  CHECK(results[0].hook == "10-first");
  CHECK(results[0].status == 0);
  CHECK(results[1].hook == "20-second");
  CHECK(results[1].status == 3);
  CHECK(results[2].hook == "40-no-interpreter");
  CHECK(results[2].status == 127);
  CHECK(slurp(root / "out/order") == "first\nsecond\n");
  CHECK(slurp(root / "out/root") == root.string() + "\n");
  CHECK(slurp(root / "out/path") == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n");
  CHECK(slurp(root / "out/pwd") == "/\n");
  CHECK(err.find("on-stdout") != std::string::npos);
  CHECK(out.find("on-stdout") == std::string::npos);
  fs::remove_all(root);
}

TEST_SUITE_END();
