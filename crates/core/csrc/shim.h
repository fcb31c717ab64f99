// The project's only C++: LibTorch entry points that tch does not bind.
// Plain C ABI; every function returns 0 on success, 1 on a caught C++ exception whose message is then
// read with cxf_last_error() (thread-local, like torch-sys's PROTECT). No exception crosses this boundary.
// The distributed issue adds the c10d process-group API (TCPStore, Gloo, NCCL) to this same file.
#pragma once
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

#ifdef __cplusplus
}
#endif
