// The project's only C++: LibTorch entry points that tch does not bind.
// Plain C ABI; every function returns 0 on success, 1 on a caught C++ exception whose message is then
// read with cxf_last_error() (thread-local, like torch-sys's PROTECT). No exception crosses this boundary.
// c10d (data parallelism): a TCPStore rendezvous plus ProcessGroupGloo (CPU tensors) or ProcessGroupNCCL (CUDA
// tensors; compiled in only when build.rs defines CXF_WITH_NCCL) behind opaque handles.
#pragma once
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

const char *cxf_last_error(void);
/* Writes a newly allocated, NUL-terminated JSON-free text report (torch version, parallel info, build
   config) to *out; free it with cxf_free_string. */
int cxf_runtime_report(char **out);
void cxf_free_string(char *s);
/* device_type: 0 = CPU, 1 = CUDA. dtype: 0 = float16, 1 = bfloat16. Returns the previous enabled flag in *prev. */
int cxf_set_autocast(int device_type, int enabled, int dtype, int *prev);
int cxf_autocast_increment_nesting(int *depth);
int cxf_autocast_decrement_nesting(int *depth);
int cxf_autocast_clear_cache(void);
/* TF32 for CUDA matmuls (cuBLAS) and cuDNN convolutions: 0 = off (exact float32), 1 = on. */
int cxf_set_tf32(int matmul, int cudnn);

/* ---- optimizer ----------------------------------------------------------------------------------------------
   Tensors cross as torch-sys pointers (`at::Tensor *`). */
/* One AdamW update of n tensors with the same lr and weight decay (torch.optim.AdamW, fused=True:
   at::_fused_adamw_, one pass per tensor). `step` is t of the bias corrections (already incremented). */
int cxf_fused_adamw(void **params, void **grads, void **exp_avgs, void **exp_avg_sqs, int n, double lr, double beta1,
                    double beta2, double weight_decay, double eps, double step);
/* torch.nn.utils.clip_grad_norm_ (foreach): total L2 norm of the n gradients into *total (float32 arithmetic), and
   when max_norm > 0 every gradient scaled in place by min(1, max_norm / (total + 1e-6)). */
int cxf_clip_grad_norm(void **grads, int n, double max_norm, double *total);
/* Sets the gradients of n leaf tensors to undefined (optimizer.zero_grad(set_to_none=True)). */
int cxf_clear_grads(void **params, int n);

/* ---- c10d ---------------------------------------------------------------------------------------------------
   Tensors cross as torch-sys pointers (`at::Tensor *`, tch's C_tensor). Every call returns 0 or 1 (error text in
   cxf_last_error()); every handle has its free function. Collectives are issued asynchronously and return a work
   handle; cxf_work_wait blocks until completion, the process group's timeout (plus 2 s of slack) or an error. */
typedef struct cxf_pg cxf_pg;
typedef struct cxf_work cxf_work;

/* 1 when ProcessGroupGloo / ProcessGroupNCCL are compiled into this build. */
int cxf_dist_has_gloo(void);
int cxf_dist_has_nccl(void);
/* Rendezvous on host:port (rank 0 hosts the TCPStore server), check ranks and world sizes through the store, then
   build the backend: 0 = Gloo, 1 = NCCL (device_index = CUDA device of this rank). */
int cxf_pg_create(const char *host, int port, int rank, int world, int64_t timeout_ms, int backend, int device_index,
                  cxf_pg **out);
void cxf_pg_free(cxf_pg *pg);
/* op: 0 = sum, 1 = average (sum then divide by the world size when the work is waited on). In place. */
int cxf_pg_all_reduce(cxf_pg *pg, void *tensor, int op, cxf_work **out);
int cxf_pg_broadcast(cxf_pg *pg, void *tensor, int root, cxf_work **out);
/* outputs: world tensors shaped like input (allocated by the caller), filled in rank order. */
int cxf_pg_all_gather(cxf_pg *pg, void *input, void **outputs, int n_outputs, cxf_work **out);
int cxf_pg_barrier(cxf_pg *pg, cxf_work **out);
/* Records this rank's fatal error in the store (key cxf/error/<rank>) so that peers can name it. Best effort. */
int cxf_pg_report_error(cxf_pg *pg, const char *msg);
int cxf_work_wait(cxf_work *w);
void cxf_work_free(cxf_work *w);

#ifdef __cplusplus
}
#endif
