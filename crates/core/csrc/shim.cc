// See shim.h. Includes only the ATen headers it needs (never <torch/torch.h>: that alone costs ~20 s per compile).
#include "shim.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

namespace {
thread_local std::string last_error;

void set_error(const char *msg) { last_error = msg ? msg : "unknown C++ exception"; }
}  // namespace

#define CXF_PROTECT(body)                                  \
  try {                                                    \
    last_error.clear();                                    \
    body;                                                  \
    return 0;                                              \
  } catch (const std::exception &e) {                      \
    set_error(e.what());                                   \
    return 1;                                              \
  } catch (...) {                                          \
    set_error("unknown C++ exception");                    \
    return 1;                                              \
  }

extern "C" {

const char *cxf_last_error(void) { return last_error.c_str(); }

int cxf_runtime_report(char **out) {
  CXF_PROTECT({
    std::string s;
    s += "torch_version=" TORCH_VERSION "\n";
    s += "mkldnn_available=" + std::to_string(at::hasMKLDNN() ? 1 : 0) + "\n";
    s += "mkl_available=" + std::to_string(at::hasMKL() ? 1 : 0) + "\n";
    s += "openmp_available=" + std::to_string(at::hasOpenMP() ? 1 : 0) + "\n";
    s += "cuda_compiled=" + std::to_string(at::hasCUDA() ? 1 : 0) + "\n";
    s += "--- parallel ---\n" + at::get_parallel_info();
    s += "--- config ---\n" + at::show_config();
    char *buf = static_cast<char *>(std::malloc(s.size() + 1));
    if (!buf) throw std::bad_alloc();
    std::memcpy(buf, s.c_str(), s.size() + 1);
    *out = buf;
  })
}

void cxf_free_string(char *s) { std::free(s); }

int cxf_set_autocast(int device_type, int enabled, int dtype, int *prev) {
  CXF_PROTECT({
    const at::DeviceType dev = device_type == 1 ? at::kCUDA : at::kCPU;
    *prev = at::autocast::is_autocast_enabled(dev) ? 1 : 0;
    at::autocast::set_autocast_dtype(dev, dtype == 1 ? at::kBFloat16 : at::kHalf);
    at::autocast::set_autocast_enabled(dev, enabled != 0);
  })
}

int cxf_autocast_increment_nesting(int *depth) { CXF_PROTECT({ *depth = static_cast<int>(at::autocast::increment_nesting()); }) }

int cxf_autocast_decrement_nesting(int *depth) { CXF_PROTECT({ *depth = static_cast<int>(at::autocast::decrement_nesting()); }) }

int cxf_autocast_clear_cache(void) { CXF_PROTECT({ at::autocast::clear_cache(); }) }

int cxf_set_tf32(int matmul, int cudnn) {
  CXF_PROTECT({
    at::globalContext().setAllowTF32CuBLAS(matmul != 0);
    at::globalContext().setAllowTF32CuDNN(cudnn != 0);
  })
}

}  // extern "C"
