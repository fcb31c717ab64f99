// See shim.h. Includes only the ATen headers it needs (never <torch/torch.h>: that alone costs ~20 s per compile).
#include "shim.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <ATen/autocast_mode.h>
#include <ATen/ops/_foreach_mul.h>
#include <ATen/ops/_foreach_norm.h>
#include <ATen/ops/_fused_adamw.h>
#include <ATen/ops/full.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/stack.h>
#include <torch/version.h>

// c10d: ProcessGroupGloo.hpp is empty without USE_C10D_GLOO (build.rs defines it) and includes <gloo/...>, which the
// PyPI wheel does not ship: build.rs points at Debian's libgloo-dev headers (see docs/toolchain notes). Only
// shared_ptrs to gloo types appear in the c10d classes we construct, so their layout does not depend on the gloo
// snapshot; everything else runs inside libtorch_cpu.
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#ifdef CXF_WITH_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>
#ifdef CXF_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <c10/util/Logging.h>
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {
// c10d logs every refused connection while a rank waits for the rendezvous store, each with a C++ backtrace, to
// stderr; the outcome is reported once, as a clear error. Quiet those logs for the duration of the connection,
// unless the user asked for a level with TORCH_CPP_LOG_LEVEL, which then applies from here on.
struct QuietRetryLogs {
  int prev = 0;
  bool active = false;
  QuietRetryLogs() {
    if (std::getenv("TORCH_CPP_LOG_LEVEL") != nullptr) {
      c10::initLogging();  // applies TORCH_CPP_LOG_LEVEL (LibTorch without Python never reads it otherwise)
    } else {
      prev = FLAGS_caffe2_log_level;
      FLAGS_caffe2_log_level = 3;  // FATAL only
      active = true;
    }
  }
  ~QuietRetryLogs() {
    if (active) FLAGS_caffe2_log_level = prev;
  }
  QuietRetryLogs(const QuietRetryLogs &) = delete;
  QuietRetryLogs &operator=(const QuietRetryLogs &) = delete;
};
}  // namespace

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

// ---- optimizer ----------------------------------------------------------------------------------------------
// Tensors cross as torch-sys pointers (`at::Tensor *`, tch's C_tensor), as in the c10d half below. The bodies are
// functions so that CXF_PROTECT's macro argument holds no bare commas.

}  // extern "C"

namespace {
std::vector<at::Tensor> tensors_of(void **ts, int n) {
  std::vector<at::Tensor> out;
  out.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) out.push_back(*static_cast<at::Tensor *>(ts[i]));
  return out;
}

void fused_adamw(void **params, void **grads, void **exp_avgs, void **exp_avg_sqs, int n, double lr, double beta1,
                 double beta2, double weight_decay, double eps, double step) {
  if (n <= 0) return;
  std::vector<at::Tensor> p = tensors_of(params, n);
  std::vector<at::Tensor> m = tensors_of(exp_avgs, n);
  std::vector<at::Tensor> v = tensors_of(exp_avg_sqs, n);
  std::vector<at::Tensor> g;
  g.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    const at::Tensor &gi = *static_cast<at::Tensor *>(grads[i]);
    g.push_back(gi.is_contiguous() ? gi : gi.contiguous());  // read only: a contiguous copy is fine
  }
  // torch.optim.AdamW(fused=True) keeps one float32 step tensor per parameter and increments it before the call;
  // the kernels read its value (CPU: .item<float>(), CUDA: on the device), so one shared tensor serves the group.
  at::Tensor st = at::full({}, step, p[0].options().dtype(at::kFloat));
  std::vector<at::Tensor> steps(static_cast<size_t>(n), st);
  at::_fused_adamw_(p, g, m, v, {}, steps, lr, beta1, beta2, weight_decay, eps, /*amsgrad=*/false,
                    /*maximize=*/false);
}

void clip_grad_norm(void **grads, int n, double max_norm, double *total) {
  *total = 0.0;
  if (n <= 0) return;
  std::vector<at::Tensor> g = tensors_of(grads, n);
  // torch.nn.utils.clip_grad_norm_(foreach=True): per-tensor norms, the norm of their stack, coefficient
  // max_norm / (total + 1e-6) clamped at 1, every gradient scaled in place; float32 arithmetic as in torch.
  std::vector<at::Tensor> norms = at::_foreach_norm(g, 2);
  at::Tensor t = at::linalg_vector_norm(at::stack(norms), 2);
  *total = t.item<double>();
  if (max_norm > 0.0) {
    // Python's `max_norm / (total + 1e-6)` on a tensor is Tensor.__rtruediv__: reciprocal, then multiply.
    at::Tensor coef = ((t + 1e-6).reciprocal() * max_norm).clamp_max(1.0);
    // ×1.0 is exact: skip the pass over every gradient when nothing is clipped.
    if (coef.item<float>() < 1.0f) at::_foreach_mul_(g, coef);
  }
}
}  // namespace

extern "C" {

int cxf_fused_adamw(void **params, void **grads, void **exp_avgs, void **exp_avg_sqs, int n, double lr, double beta1,
                    double beta2, double weight_decay, double eps, double step) {
  CXF_PROTECT(fused_adamw(params, grads, exp_avgs, exp_avg_sqs, n, lr, beta1, beta2, weight_decay, eps, step))
}

int cxf_clip_grad_norm(void **grads, int n, double max_norm, double *total) {
  CXF_PROTECT(clip_grad_norm(grads, n, max_norm, total))
}

int cxf_clear_grads(void **params, int n) {
  CXF_PROTECT(for (int i = 0; i < n; ++i) static_cast<at::Tensor *>(params[i])->mutable_grad().reset())
}

}  // extern "C"

// ---- c10d ----------------------------------------------------------------------------------------------------

struct cxf_pg {
  c10::intrusive_ptr<c10d::Store> store;  // the TCPStore (cxf/* keys); backends get a PrefixStore over it
  c10::intrusive_ptr<c10d::Backend> backend;
  int rank = 0;
  int world = 1;
  std::chrono::milliseconds timeout{0};
  std::string host;
  int port = 0;
  std::string backend_name;
};

// A work item copies what its error messages need, so that it stays valid after its group is freed.
struct cxf_work {
  c10::intrusive_ptr<c10d::Work> work;
  std::vector<at::Tensor> keep;  // tensors the collective reads or writes, alive until freed
  bool average = false;
  c10::intrusive_ptr<c10d::Store> store;
  int rank = 0;
  int world = 1;
  std::chrono::milliseconds timeout{0};
  std::string host;
  int port = 0;
  std::string what;
};

namespace {

std::string seconds(std::chrono::milliseconds ms) {
  std::ostringstream o;
  const double s = ms.count() / 1000.0;
  if (ms.count() % 1000 == 0) {
    o << ms.count() / 1000 << " s";
  } else {
    o << s << " s";
  }
  return o.str();
}

// The first line of a c10d/Gloo message, without the C++ frames that follow "Exception raised from".
std::string first_line(const std::string &m) {
  std::string s = m;
  const auto cut = s.find("\nException raised from");
  if (cut != std::string::npos) s = s.substr(0, cut);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

bool contains(const std::string &s, const char *needle) { return s.find(needle) != std::string::npos; }

std::vector<uint8_t> bytes(const std::string &s) { return std::vector<uint8_t>(s.begin(), s.end()); }

std::string text(const std::vector<uint8_t> &v) { return std::string(v.begin(), v.end()); }

std::string rank_key(const char *what, int r) { return std::string("cxf/") + what + "/" + std::to_string(r); }

// Waits for `key` until the deadline; false on timeout (any other error propagates).
bool wait_key(c10d::Store &store, const std::string &key, std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  if (left.count() < 1) left = std::chrono::milliseconds(1);
  try {
    store.wait({key}, left);
    return true;
  } catch (const std::exception &e) {
    const std::string m = e.what();
    if (contains(m, "imeout") || contains(m, "timed out")) return false;
    throw;
  }
}

// What the peers recorded with cxf_pg_report_error, as " rank r reported: …" clauses (best effort: the store lives
// in rank 0's process and may be gone).
std::string peer_reports(const cxf_work &w) {
  std::string out;
  if (!w.store) return out;
  try {
    for (int r = 0; r < w.world; ++r) {
      if (r == w.rank) continue;
      const std::string key = rank_key("error", r);
      if (w.store->check({key})) out += "; rank " + std::to_string(r) + " reported: " + text(w.store->get(key));
    }
  } catch (const std::exception &) {
    if (w.rank != 0)
      out += "; the rendezvous store on rank 0 (" + w.host + ":" + std::to_string(w.port) +
             ") is unreachable, so rank 0 has probably exited";
  }
  return out;
}

cxf_work *issue(cxf_pg *pg, c10::intrusive_ptr<c10d::Work> w, std::vector<at::Tensor> keep, bool average,
                std::string what) {
  auto *out = new cxf_work();
  out->work = std::move(w);
  out->keep = std::move(keep);
  out->average = average;
  out->store = pg->store;
  out->rank = pg->rank;
  out->world = pg->world;
  out->timeout = pg->timeout;
  out->host = pg->host;
  out->port = pg->port;
  out->what = std::move(what);
  return out;
}

at::Tensor &tensor_arg(void *p, const char *what) {
  if (!p) throw std::invalid_argument(std::string(what) + ": null tensor");
  auto &t = *static_cast<at::Tensor *>(p);
  if (!t.defined()) throw std::invalid_argument(std::string(what) + ": undefined tensor");
  if (!t.is_contiguous()) throw std::invalid_argument(std::string(what) + ": tensor must be contiguous");
  return t;
}

cxf_pg *checked(cxf_pg *pg) {
  if (!pg || !pg->backend) throw std::invalid_argument("the process group was destroyed");
  return pg;
}

}  // namespace

extern "C" {

int cxf_dist_has_gloo(void) {
#ifdef CXF_WITH_GLOO
  return 1;
#else
  return 0;
#endif
}

int cxf_dist_has_nccl(void) {
#ifdef CXF_WITH_NCCL
  return 1;
#else
  return 0;
#endif
}

int cxf_pg_create(const char *host_c, int port, int rank, int world, int64_t timeout_ms, int backend, int device_index,
                  cxf_pg **out) {
  CXF_PROTECT({
    const std::string host = host_c ? host_c : "";
    const std::string where = host + ":" + std::to_string(port);
    if (world < 1) throw std::invalid_argument("worldSize must be at least 1, got " + std::to_string(world));
    if (rank < 0 || rank >= world)
      throw std::invalid_argument("rank " + std::to_string(rank) + " is outside [0, " + std::to_string(world) + ")");
    if (port < 1 || port > 65535) throw std::invalid_argument("masterPort " + std::to_string(port) + " is not a TCP port");
    if (timeout_ms < 1) throw std::invalid_argument("timeoutMs must be positive");
    if (host.empty()) throw std::invalid_argument("masterAddr is empty");
    const std::chrono::milliseconds timeout(timeout_ms);
    const auto deadline = std::chrono::steady_clock::now() + timeout;

    auto pg = std::make_unique<cxf_pg>();
    pg->rank = rank;
    pg->world = world;
    pg->timeout = timeout;
    pg->host = host;
    pg->port = port;

    // 1. TCPStore: rank 0 serves; everyone (rank 0 included) connects as a client.
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(port);
    so.isServer = rank == 0;
    so.numWorkers = std::nullopt;
    so.waitWorkers = false;  // joining is checked below, with messages that name the missing rank
    // A refused connection is retried until the timeout has passed; c10d's randomised back-off can stretch that to
    // about twice the timeout (measured: 2.3 s for 1 s, 7.9 s for 4 s). Never less: rank 0 may start late.
    so.timeout = timeout;
    try {
      QuietRetryLogs quiet;
      pg->store = c10::make_intrusive<c10d::TCPStore>(host, so);
    } catch (const std::exception &e) {
      const std::string m = e.what();
      if (rank == 0 && (contains(m, "EADDRINUSE") || contains(m, "already in use")))
        throw std::runtime_error("port " + std::to_string(port) + " on " + host +
                                 " is already in use (rank 0 hosts the rendezvous store there; choose another "
                                 "master port or stop the process holding it)");
      if (rank == 0)
        throw std::runtime_error("rank 0 could not start the rendezvous store on " + where + ": " + first_line(m));
      throw std::runtime_error("could not reach the master " + where + " within " + seconds(timeout) + " (rank " +
                               std::to_string(rank) + "; is rank 0 running and is the address reachable from here?): " +
                               first_line(m));
    }

    // 2. Claim the rank and publish the world size. Rank 0 is the authority: it checks every rank's world size and
    //    publishes its verdict (cxf/ready = "ok <world>" or the error), then, on an error, lingers until the joined
    //    ranks have read it (it hosts the store, so leaving at once would cut them off mid-read).
    const int64_t claims = pg->store->add(rank_key("rank", rank), 1);
    if (claims > 1)
      throw std::runtime_error("rank " + std::to_string(rank) + " joined " + where +
                               " twice: another process already claimed it (duplicate RANK)");
    pg->store->set(rank_key("world", rank), bytes(std::to_string(world)));
    if (rank == 0) {
      std::string verdict;
      for (int r = 1; r < world && verdict.empty(); ++r) {
        const std::string key = rank_key("world", r);
        if (!wait_key(*pg->store, key, deadline)) {
          std::string missing;
          for (int q = 1; q < world; ++q)
            if (!pg->store->check({rank_key("world", q)})) missing += (missing.empty() ? "" : ", ") + std::to_string(q);
          verdict = "timed out after " + seconds(timeout) + " waiting for rank(s) " + missing + " of worldSize " +
                    std::to_string(world) + " to join " + where;
          break;
        }
        const std::string theirs = text(pg->store->get(key));
        if (theirs != std::to_string(world))
          verdict = "world-size mismatch: rank 0 has worldSize " + std::to_string(world) + " but rank " +
                    std::to_string(r) + " has worldSize " + theirs;
      }
      if (verdict.empty()) {
        pg->store->set("cxf/ready", bytes("ok " + std::to_string(world)));
      } else {
        pg->store->set("cxf/ready", bytes(verdict));
        int64_t joined = 0;
        for (int q = 1; q < world; ++q) joined += pg->store->check({rank_key("world", q)}) ? 1 : 0;
        const auto linger = std::chrono::steady_clock::now() + std::min(timeout, std::chrono::milliseconds(5000));
        while (pg->store->add("cxf/acked", 0) < joined && std::chrono::steady_clock::now() < linger)
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
        throw std::runtime_error(verdict + " (this is rank 0)");
      }
    } else {
      // Rank 0 may have started later than this rank: allow it its own full timeout.
      const auto ready_deadline = deadline + timeout;
      std::string verdict;
      std::string mismatch;
      bool confirmed = false;
      try {
        // Rank 0's world size first (it publishes it as soon as it has started the store): a mismatch is reported
        // from this rank's point of view too. Rank 0 waits for this rank's acknowledgement before it leaves.
        if (wait_key(*pg->store, rank_key("world", 0), ready_deadline)) {
          const std::string theirs = text(pg->store->get(rank_key("world", 0)));
          if (theirs != std::to_string(world)) {
            pg->store->add("cxf/acked", 1);
            mismatch = "world-size mismatch: rank " + std::to_string(rank) + " has worldSize " + std::to_string(world) +
                      " but rank 0 has worldSize " + theirs + " (this is rank " + std::to_string(rank) + ")";
          }
        }
        if (mismatch.empty()) confirmed = wait_key(*pg->store, "cxf/ready", ready_deadline);
        if (confirmed) {
          verdict = text(pg->store->get("cxf/ready"));
          pg->store->add("cxf/acked", 1);
        }
      } catch (const std::exception &e) {
        if (!mismatch.empty()) throw std::runtime_error(mismatch);
        throw std::runtime_error("lost the rendezvous store on rank 0 (" + where +
                                 ") before the group was confirmed: rank 0 has probably failed or exited (" +
                                 first_line(e.what()) + ")");
      }
      if (!mismatch.empty()) throw std::runtime_error(mismatch);
      if (!confirmed)
        throw std::runtime_error("timed out after " + seconds(timeout * 2) + " waiting for rank 0 to confirm that all " +
                                 std::to_string(world) + " ranks joined " + where + " (this is rank " +
                                 std::to_string(rank) + ")");
      if (verdict.rfind("ok ", 0) != 0) throw std::runtime_error(verdict + " (reported by rank 0; this is rank " +
                                                                 std::to_string(rank) + ")");
      const std::string theirs = verdict.substr(3);
      if (theirs != std::to_string(world))
        throw std::runtime_error("world-size mismatch: rank " + std::to_string(rank) + " has worldSize " +
                                 std::to_string(world) + " but rank 0 has worldSize " + theirs);
    }

    // 3. The backend, rendezvousing through its own key prefix.
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>(backend == 1 ? "nccl" : "gloo", pg->store);
    if (backend == 0) {
#ifdef CXF_WITH_GLOO
      auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
      const char *ifname = std::getenv("GLOO_SOCKET_IFNAME");
      if (ifname && *ifname) {
        std::string first = ifname;
        first = first.substr(0, first.find(','));
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(first));
      } else if (host == "localhost" || host.rfind("127.", 0) == 0) {
        // A loopback master means a single machine: bind the peers to loopback too.
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      } else {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      opts->threads = 2;
      try {
        pg->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, rank, world, opts);
      } catch (const std::exception &e) {
        throw std::runtime_error("Gloo could not connect the " + std::to_string(world) + " ranks within " +
                                 seconds(timeout) + ": " + first_line(e.what()));
      }
      pg->backend_name = "gloo";
#else
      throw std::runtime_error("the Gloo backend is not compiled into this build: gloo's headers were missing when it "
                               "was built (run scripts/setup.sh, which installs Debian's libgloo-dev, then rebuild)");
#endif
    } else if (backend == 1) {
#ifdef CXF_WITH_NCCL
      if (device_index < 0) throw std::invalid_argument("the NCCL backend needs a CUDA device index");
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = timeout;
      pg->backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(prefixed, rank, world, opts);
      pg->backend->setBoundDeviceId(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device_index)));
      pg->backend_name = "nccl";
#else
      (void)device_index;
      throw std::runtime_error("the NCCL backend is not compiled into this build (build cxformer with the 'cuda' "
                               "feature against a CUDA LibTorch with NCCL headers); use 'gloo'");
#endif
    } else {
      throw std::invalid_argument("unknown backend id " + std::to_string(backend));
    }
    *out = pg.release();
  })
}

void cxf_pg_free(cxf_pg *pg) {
  try {
    delete pg;
  } catch (...) {
  }
}

int cxf_pg_all_reduce(cxf_pg *pg, void *tensor, int op, cxf_work **out) {
  CXF_PROTECT({
    checked(pg);
    auto &t = tensor_arg(tensor, "all_reduce");
    std::vector<at::Tensor> v{t};
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;  // Gloo has no AVG: average = sum / world on completion
    o.timeout = pg->timeout;
    auto w = pg->backend->allreduce(v, o);
    *out = issue(pg, std::move(w), std::move(v), op == 1,
                 std::string("all_reduce(") + (op == 1 ? "avg" : "sum") + ", " + std::to_string(t.numel()) + " values)");
  })
}

int cxf_pg_broadcast(cxf_pg *pg, void *tensor, int root, cxf_work **out) {
  CXF_PROTECT({
    checked(pg);
    auto &t = tensor_arg(tensor, "broadcast");
    if (root < 0 || root >= pg->world)
      throw std::invalid_argument("broadcast root " + std::to_string(root) + " is outside [0, " +
                                  std::to_string(pg->world) + ")");
    std::vector<at::Tensor> v{t};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    o.rootTensor = 0;
    o.timeout = pg->timeout;
    auto w = pg->backend->broadcast(v, o);
    *out = issue(pg, std::move(w), std::move(v), false,
                 "broadcast(root " + std::to_string(root) + ", " + std::to_string(t.numel()) + " values)");
  })
}

int cxf_pg_all_gather(cxf_pg *pg, void *input, void **outputs, int n_outputs, cxf_work **out) {
  CXF_PROTECT({
    checked(pg);
    auto &t = tensor_arg(input, "all_gather input");
    if (n_outputs != pg->world)
      throw std::invalid_argument("all_gather needs " + std::to_string(pg->world) + " output tensors, got " +
                                  std::to_string(n_outputs));
    std::vector<at::Tensor> in{t};
    std::vector<std::vector<at::Tensor>> outs(1);
    for (int i = 0; i < n_outputs; ++i) {
      auto &o = tensor_arg(outputs[i], "all_gather output");
      if (o.sizes() != t.sizes() || o.scalar_type() != t.scalar_type())
        throw std::invalid_argument("all_gather output " + std::to_string(i) + " does not match the input's shape/dtype");
      outs[0].push_back(o);
    }
    c10d::AllgatherOptions o;
    o.timeout = pg->timeout;
    auto w = pg->backend->allgather(outs, in, o);
    std::vector<at::Tensor> keep = outs[0];
    keep.push_back(t);
    *out = issue(pg, std::move(w), std::move(keep), false, "all_gather(" + std::to_string(t.numel()) + " values)");
  })
}

int cxf_pg_barrier(cxf_pg *pg, cxf_work **out) {
  CXF_PROTECT({
    checked(pg);
    c10d::BarrierOptions o;
    o.timeout = pg->timeout;
    auto w = pg->backend->barrier(o);
    *out = issue(pg, std::move(w), {}, false, "barrier");
  })
}

int cxf_pg_report_error(cxf_pg *pg, const char *msg) {
  CXF_PROTECT({
    if (pg && pg->store) pg->store->set(rank_key("error", pg->rank), bytes(msg ? msg : "error"));
  })
}

int cxf_work_wait(cxf_work *w) {
  CXF_PROTECT({
    if (!w || !w->work) throw std::invalid_argument("null work handle");
    try {
      // Gloo enforces the group's timeout inside the collective; this bound is the backstop.
      w->work->wait(w->timeout + std::chrono::milliseconds(2000));
    } catch (const std::exception &e) {
      std::string m = first_line(e.what());
      if (contains(m, "Operation timed out")) m = "no completion within the timeout";
      const std::string msg = "rank " + std::to_string(w->rank) + ": " + w->what + " failed (timeout " +
                              seconds(w->timeout) + "): " + m;
      try {
        if (w->store) w->store->set(rank_key("error", w->rank), bytes(msg));
      } catch (...) {
      }
      throw std::runtime_error(msg + peer_reports(*w));
    }
    if (w->average && w->world > 1)
      for (auto &t : w->keep) t.div_(w->world);
  })
}

void cxf_work_free(cxf_work *w) {
  try {
    delete w;
  } catch (...) {
  }
}

}  // extern "C"
