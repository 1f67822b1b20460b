/* cyclestream's fused instance norm on the GPU, from C: out = skip + act(IN(x)).
 *
 * The kernels are cyclestream's Triton kernels (kernels/instance_norm_triton.py), compiled ahead of
 * time by `python -m cyclestream.kernels.aot` into cubins (and one PTX for newer GPUs) that are
 * embedded in this library; nothing here needs Python or Triton at run time.  The launch plan is
 * the kernels' split reduction over dense NCHW rows: per-tile (count, mean, M2) partials, a merge
 * into mean and rstd per (n, c) row, then normalize + epilogue.  Statistics and arithmetic are fp32
 * for fp32 and fp16 storage alike.
 *
 * Everything runs in the calling thread's current CUDA context (the one TensorRT or the caller set),
 * on the stream it is given; the kernel modules are loaded into each context at its first launch.
 */
#ifndef CYCLESTREAM_INSTANCE_NORM_H
#define CYCLESTREAM_INSTANCE_NORM_H

#include <cuda.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { CS_DTYPE_FLOAT32 = 0, CS_DTYPE_FLOAT16 = 1 } cs_dtype;
typedef enum { CS_ACT_NONE = 0, CS_ACT_RELU = 1 } cs_act;

/* One dense NCHW tensor seen as N·C rows of HW elements. */
typedef struct {
  int64_t n;
  int64_t c;
  int64_t hw;
  cs_dtype dtype;
  cs_act act;
  int has_skip; /* 1: add `skip` (same shape and dtype as x) after the activation */
  float eps;
} cs_instance_norm_desc;

/* 0 when the library can run `desc`; otherwise -1 and cs_instance_norm_last_error() says why
 * (rows longer than the kernels' tile budget, unknown dtype or activation, empty tensor). */
int cs_instance_norm_check(const cs_instance_norm_desc *desc);

/* Bytes of device workspace cs_instance_norm_enqueue needs for `desc` (256-byte aligned pieces). */
size_t cs_instance_norm_workspace_size(const cs_instance_norm_desc *desc);

/* Launches the three kernels on `stream`.  `skip` is ignored unless desc->has_skip; `workspace`
 * holds at least cs_instance_norm_workspace_size(desc) bytes.  Returns CUDA_SUCCESS or the driver's
 * error; on an error cs_instance_norm_last_error() says which step failed.  Thread-safe. */
CUresult cs_instance_norm_enqueue(const cs_instance_norm_desc *desc, CUdeviceptr x, CUdeviceptr skip,
                                  CUdeviceptr out, CUdeviceptr workspace, CUstream stream);

/* Loads the kernel modules into the current context now (optional: enqueue does it on first use). */
CUresult cs_instance_norm_load(void);

/* The last error of this thread, "" if none. */
const char *cs_instance_norm_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* CYCLESTREAM_INSTANCE_NORM_H */
