#include "libmirage/util/zstd.hpp"

#include <zstd.h>

#include <memory>
#include <string>

#include "libmirage/util/error.hpp"

namespace mirage::util {

namespace {
struct CctxDeleter {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct DctxDeleter {
  void operator()(ZSTD_DCtx* c) const { ZSTD_freeDCtx(c); }
};
}  // namespace

std::vector<uint8_t> zstd_compress(std::span<const uint8_t> data, int level) {
  thread_local std::unique_ptr<ZSTD_CCtx, CctxDeleter> cctx(ZSTD_createCCtx());
  std::vector<uint8_t> out(ZSTD_compressBound(data.size()));
  size_t n = ZSTD_compressCCtx(cctx.get(), out.data(), out.size(), data.data(), data.size(), level);
  if (ZSTD_isError(n)) throw Error(ErrorKind::failed, std::string("zstd compress: ") + ZSTD_getErrorName(n));
  out.resize(n);
  return out;
}

void zstd_decompress(std::span<const uint8_t> frame, std::span<uint8_t> out) {
  thread_local std::unique_ptr<ZSTD_DCtx, DctxDeleter> dctx(ZSTD_createDCtx());
  size_t n = ZSTD_decompressDCtx(dctx.get(), out.data(), out.size(), frame.data(), frame.size());
  if (ZSTD_isError(n)) throw Error(ErrorKind::integrity, std::string("zstd decompress: ") + ZSTD_getErrorName(n));
  if (n != out.size())
    throw Error(ErrorKind::integrity, "zstd decompress: expected " + std::to_string(out.size()) + " bytes, got " +
                                          std::to_string(n));
}

}  // namespace mirage::util
