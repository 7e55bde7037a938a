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

size_t zstd_bound(size_t size) { return ZSTD_compressBound(size); }

size_t zstd_compress_into(std::span<const uint8_t> data, std::span<uint8_t> out, int level) {
  thread_local std::unique_ptr<ZSTD_CCtx, CctxDeleter> cctx(ZSTD_createCCtx());
  size_t n = ZSTD_compressCCtx(cctx.get(), out.data(), out.size(), data.data(), data.size(), level);
  if (ZSTD_isError(n)) throw Error(ErrorKind::failed, std::string("zstd compress: ") + ZSTD_getErrorName(n));
  return n;
}

std::vector<uint8_t> zstd_compress(std::span<const uint8_t> data, int level) {
  std::vector<uint8_t> out(ZSTD_compressBound(data.size()));
  out.resize(zstd_compress_into(data, out, level));
  return out;
}

uint64_t zstd_content_size(std::span<const uint8_t> frame) {
  unsigned long long n = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (n == ZSTD_CONTENTSIZE_ERROR || n == ZSTD_CONTENTSIZE_UNKNOWN)
    throw Error(ErrorKind::integrity, "zstd frame: no valid content size in its header");
  return n;
}

void zstd_decompress(std::span<const uint8_t> frame, std::span<uint8_t> out) {
  thread_local std::unique_ptr<ZSTD_DCtx, DctxDeleter> dctx(ZSTD_createDCtx());
  size_t n = ZSTD_decompressDCtx(dctx.get(), out.data(), out.size(), frame.data(), frame.size());
  if (ZSTD_isError(n)) throw Error(ErrorKind::integrity, std::string("zstd decompress: ") + ZSTD_getErrorName(n));
  if (n != out.size())
    throw Error(ErrorKind::integrity, "zstd decompress: expected " + std::to_string(out.size()) + " bytes, got " +
                                          std::to_string(n));
}

std::vector<uint8_t> zstd_compress_delta(std::span<const uint8_t> data, std::span<const uint8_t> base, int level) {
  thread_local std::unique_ptr<ZSTD_CCtx, CctxDeleter> cctx(ZSTD_createCCtx());
  ZSTD_CCtx_reset(cctx.get(), ZSTD_reset_session_and_parameters);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, level);
  // The window must reach back over the whole base.
  int log = 10;
  while ((size_t{1} << log) < base.size() + data.size() && log < 27) ++log;
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_windowLog, log);
  size_t rc = ZSTD_CCtx_refPrefix(cctx.get(), base.data(), base.size());
  if (ZSTD_isError(rc)) throw Error(ErrorKind::failed, std::string("zstd prefix: ") + ZSTD_getErrorName(rc));
  std::vector<uint8_t> out(ZSTD_compressBound(data.size()));
  size_t n = ZSTD_compress2(cctx.get(), out.data(), out.size(), data.data(), data.size());
  if (ZSTD_isError(n)) throw Error(ErrorKind::failed, std::string("zstd compress: ") + ZSTD_getErrorName(n));
  out.resize(n);
  return out;
}

void zstd_decompress_delta(std::span<const uint8_t> frame, std::span<const uint8_t> base, std::span<uint8_t> out) {
  thread_local std::unique_ptr<ZSTD_DCtx, DctxDeleter> dctx(ZSTD_createDCtx());
  ZSTD_DCtx_reset(dctx.get(), ZSTD_reset_session_and_parameters);
  ZSTD_DCtx_setParameter(dctx.get(), ZSTD_d_windowLogMax, 27);
  size_t rc = ZSTD_DCtx_refPrefix(dctx.get(), base.data(), base.size());
  if (ZSTD_isError(rc)) throw Error(ErrorKind::integrity, std::string("zstd prefix: ") + ZSTD_getErrorName(rc));
  size_t n = ZSTD_decompressDCtx(dctx.get(), out.data(), out.size(), frame.data(), frame.size());
  if (ZSTD_isError(n)) throw Error(ErrorKind::integrity, std::string("zstd delta: ") + ZSTD_getErrorName(n));
  if (n != out.size())
    throw Error(ErrorKind::integrity, "zstd delta: expected " + std::to_string(out.size()) + " bytes, got " +
                                          std::to_string(n));
}

}  // namespace mirage::util
