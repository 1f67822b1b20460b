/* Launches cyclestream's ahead-of-time compiled Triton instance-norm kernels (see cs_instance_norm.h).
 *
 * Plan, for a dense NCHW tensor of R = N·C rows of HW elements, T = ceil(HW / CS_TILE) tiles a row:
 *   1. partial  grid (R, T):          per-tile count, mean, M2      -> workspace [R, T] ×3
 *   2. combine  grid (ceil(R/BR)):    Chan et al. merge per row     -> mean, rstd [R]
 *   3. apply    grid (R, T):          skip + act((x - mean) · rstd) -> out
 * which is what instance_norm_triton.stats/apply do with BLOCK_C = 1 and BLOCK_HW = CS_TILE.
 *
 * Partial and apply kernels come twice: aligned images (16-byte vector loads; compiled for 16-byte
 * aligned x/skip/out, HW a multiple of 16 and a unit element stride, which they do not take as an
 * argument) and general images (any alignment, scalar loads).  Each launch takes the aligned image
 * when its pointers and HW allow, the general one otherwise.
 *
 * Images: each kernel exists as cubins for a few architectures and as one PTX.  In a context whose
 * device is sm_XY we take the cubin of the same major with the highest minor ≤ Y, else the PTX if it
 * is not newer than the device (the driver compiles it), else the launch fails with a message.
 */
#include "cs_instance_norm.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "cs_kernel_images.h"

#define CS_MAX_CONTEXTS 16
#define CS_MAX_SLOTS 32
#define CS_ALIGN 256

typedef struct {
  const cs_kernel_image *image;
  CUmodule module;
  CUfunction function;
} cs_loaded_kernel;

typedef struct {
  CUcontext context;
  int n_kernels;
  cs_loaded_kernel kernels[CS_MAX_SLOTS];
} cs_context_kernels;

static cs_context_kernels g_contexts[CS_MAX_CONTEXTS];
static int g_n_contexts = 0;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local char g_error[512];

static void set_error(const char *what, CUresult code) {
  const char *text = NULL;
  if (code != CUDA_SUCCESS && cuGetErrorString(code, &text) == CUDA_SUCCESS && text) {
    snprintf(g_error, sizeof g_error, "cyclestream instance norm: %s: %s", what, text);
  } else {
    snprintf(g_error, sizeof g_error, "cyclestream instance norm: %s", what);
  }
}

const char *cs_instance_norm_last_error(void) { return g_error; }

/* ---------------------------------------------------------------------------------------------- */
/* Shapes and workspace                                                                           */

static int64_t tiles_of(int64_t hw) { return (hw + CS_TILE - 1) / CS_TILE; }

static size_t aligned(size_t bytes) { return (bytes + CS_ALIGN - 1) / CS_ALIGN * CS_ALIGN; }

int cs_instance_norm_check(const cs_instance_norm_desc *d) {
  g_error[0] = '\0';
  if (!d || d->n <= 0 || d->c <= 0 || d->hw <= 0) {
    set_error("empty or negative shape", CUDA_SUCCESS);
    return -1;
  }
  if (d->dtype != CS_DTYPE_FLOAT32 && d->dtype != CS_DTYPE_FLOAT16) {
    set_error("dtype must be float32 or float16", CUDA_SUCCESS);
    return -1;
  }
  if (d->act != CS_ACT_NONE && d->act != CS_ACT_RELU) {
    set_error("activation must be none or relu", CUDA_SUCCESS);
    return -1;
  }
  if (d->hw > (int64_t)CS_TILE * CS_MAX_TILES) {
    snprintf(g_error, sizeof g_error,
             "cyclestream instance norm: rows of %lld elements exceed the kernels' %d × %d (H·W too large)",
             (long long)d->hw, CS_TILE, CS_MAX_TILES);
    return -1;
  }
  if (d->n * d->c * tiles_of(d->hw) > INT32_MAX || d->c * d->hw > INT32_MAX) {
    set_error("tensor too large for 32-bit row indices", CUDA_SUCCESS);
    return -1;
  }
  return 0;
}

size_t cs_instance_norm_workspace_size(const cs_instance_norm_desc *d) {
  if (cs_instance_norm_check(d) != 0) return 0;
  size_t rows = (size_t)(d->n * d->c);
  size_t partials = aligned(rows * (size_t)tiles_of(d->hw) * sizeof(float));
  return 3 * partials + 2 * aligned(rows * sizeof(float));
}

/* ---------------------------------------------------------------------------------------------- */
/* Loading images into a context                                                                  */

static int usable(const cs_kernel_image *img, int sm) {
  if (img->is_ptx) return img->sm <= sm;
  return img->sm / 10 == sm / 10 && img->sm <= sm;
}

/* Better of two usable images for the same kernel slot: a cubin beats PTX, then the newer one. */
static int better(const cs_kernel_image *a, const cs_kernel_image *b) {
  if (!b) return 1;
  if (a->is_ptx != b->is_ptx) return !a->is_ptx;
  return a->sm > b->sm;
}

static int same_slot(const cs_kernel_image *a, const cs_kernel_image *b) {
  return a->role == b->role && a->dtype == b->dtype && a->act == b->act && a->has_skip == b->has_skip &&
         a->aligned == b->aligned && a->block_t == b->block_t;
}

static CUresult load_context(CUcontext context, cs_context_kernels *out) {
  CUdevice device;
  int major = 0, minor = 0;
  CUresult rc = cuCtxGetDevice(&device);
  if (rc == CUDA_SUCCESS) rc = cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device);
  if (rc == CUDA_SUCCESS) rc = cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device);
  if (rc != CUDA_SUCCESS) {
    set_error("cannot query the current device", rc);
    return rc;
  }
  int sm = major * 10 + minor;
  memset(out, 0, sizeof *out);
  out->context = context;
  for (size_t i = 0; i < cs_kernel_image_count; ++i) {
    const cs_kernel_image *img = cs_kernel_images[i];
    if (!usable(img, sm)) continue;
    int slot = 0;
    while (slot < out->n_kernels && !same_slot(out->kernels[slot].image, img)) ++slot;
    if (slot == out->n_kernels) {
      if (slot == CS_MAX_SLOTS) break;
      out->n_kernels++;
    }
    if (better(img, out->kernels[slot].image)) out->kernels[slot].image = img;
  }
  if (out->n_kernels == 0) {
    snprintf(g_error, sizeof g_error,
             "cyclestream instance norm: no kernel image for sm_%d (rebuild with CYCLESTREAM_CUDA_ARCHS including %d)",
             sm, sm);
    return CUDA_ERROR_NO_BINARY_FOR_GPU;
  }
  for (int k = 0; k < out->n_kernels; ++k) {
    cs_loaded_kernel *lk = &out->kernels[k];
    rc = cuModuleLoadData(&lk->module, lk->image->data);
    if (rc == CUDA_SUCCESS) rc = cuModuleGetFunction(&lk->function, lk->module, lk->image->symbol);
    if (rc != CUDA_SUCCESS) {
      set_error(lk->image->is_ptx ? "loading the PTX kernels" : "loading the cubin kernels", rc);
      for (int j = 0; j <= k; ++j) {
        if (out->kernels[j].module) cuModuleUnload(out->kernels[j].module);
      }
      return rc;
    }
  }
  return CUDA_SUCCESS;
}

/* The kernels of the current context, loading them on first use. */
static CUresult current_kernels(cs_context_kernels **out) {
  CUcontext context = NULL;
  CUresult rc = cuCtxGetCurrent(&context);
  if (rc != CUDA_SUCCESS || !context) {
    set_error("no current CUDA context", rc == CUDA_SUCCESS ? CUDA_ERROR_INVALID_CONTEXT : rc);
    return rc == CUDA_SUCCESS ? CUDA_ERROR_INVALID_CONTEXT : rc;
  }
  pthread_mutex_lock(&g_lock);
  for (int i = 0; i < g_n_contexts; ++i) {
    if (g_contexts[i].context == context) {
      *out = &g_contexts[i];
      pthread_mutex_unlock(&g_lock);
      return CUDA_SUCCESS;
    }
  }
  if (g_n_contexts == CS_MAX_CONTEXTS) {
    pthread_mutex_unlock(&g_lock);
    set_error("too many CUDA contexts", CUDA_ERROR_OUT_OF_MEMORY);
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  rc = load_context(context, &g_contexts[g_n_contexts]);
  if (rc == CUDA_SUCCESS) *out = &g_contexts[g_n_contexts++];
  pthread_mutex_unlock(&g_lock);
  return rc;
}

CUresult cs_instance_norm_load(void) {
  cs_context_kernels *kernels;
  return current_kernels(&kernels);
}

static const cs_loaded_kernel *find(const cs_context_kernels *k, int role, int dtype, int act, int has_skip,
                                    int aligned, int block_t) {
  for (int i = 0; i < k->n_kernels; ++i) {
    const cs_kernel_image *img = k->kernels[i].image;
    if (img->role == role && img->dtype == dtype && img->act == act && img->has_skip == has_skip &&
        img->aligned == aligned && img->block_t == block_t)
      return &k->kernels[i];
  }
  return NULL;
}

/* The aligned image when the tensors allow it and one is loaded, else the general one. */
static const cs_loaded_kernel *find_row_kernel(const cs_context_kernels *k, int role, int dtype, int act,
                                               int has_skip, int aligned) {
  const cs_loaded_kernel *found = aligned ? find(k, role, dtype, act, has_skip, 1, 0) : NULL;
  return found ? found : find(k, role, dtype, act, has_skip, 0, 0);
}

/* Whether the aligned images may run: 16-byte aligned tensors and rows a multiple of 16 elements long
 * (so that every row, tile and image start stays 16-element aligned). */
static int vector_aligned(const cs_instance_norm_desc *d, CUdeviceptr x, CUdeviceptr skip, CUdeviceptr out) {
  if (d->hw % 16 != 0 || x % 16 != 0 || out % 16 != 0) return 0;
  return !d->has_skip || skip % 16 == 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Launch                                                                                         */

static CUresult launch(const cs_loaded_kernel *k, unsigned gx, unsigned gy, void **args, int n_args, CUstream s,
                       const char *what) {
  if (!k) {
    set_error(what, CUDA_ERROR_NOT_FOUND);
    return CUDA_ERROR_NOT_FOUND;
  }
  if (k->image->n_args != n_args) {
    set_error("kernel image built for other arguments (regenerate cs_kernel_images)", CUDA_ERROR_INVALID_IMAGE);
    return CUDA_ERROR_INVALID_IMAGE;
  }
  CUresult rc = cuLaunchKernel(k->function, gx, gy, 1, (unsigned)k->image->num_warps * 32, 1, 1,
                               (unsigned)k->image->shared, s, args, NULL);
  if (rc != CUDA_SUCCESS) set_error(what, rc);
  return rc;
}

CUresult cs_instance_norm_enqueue(const cs_instance_norm_desc *d, CUdeviceptr x, CUdeviceptr skip, CUdeviceptr out,
                                  CUdeviceptr workspace, CUstream stream) {
  if (cs_instance_norm_check(d) != 0) return CUDA_ERROR_INVALID_VALUE;
  cs_context_kernels *kernels;
  CUresult rc = current_kernels(&kernels);
  if (rc != CUDA_SUCCESS) return rc;

  int32_t c = (int32_t)d->c, hw = (int32_t)d->hw, s_c = hw, s_hw = 1, n_cblocks = c;
  int32_t rows = (int32_t)(d->n * d->c), n_tiles = (int32_t)tiles_of(d->hw);
  int64_t s_n = d->c * d->hw;
  float eps = d->eps;
  size_t partials = aligned((size_t)rows * (size_t)n_tiles * sizeof(float));
  CUdeviceptr count = workspace, tmean = count + partials, m2 = tmean + partials;
  CUdeviceptr mean = m2 + partials, rstd = mean + aligned((size_t)rows * sizeof(float));
  CUdeviceptr scratch = 0, profile_scratch = 0;

  int want_aligned = vector_aligned(d, x, skip, out);

  void *partial_args[] = {&x, &count, &tmean, &m2, &c, &hw, &s_n, &s_c, &s_hw, &n_cblocks, &n_tiles,
                          &scratch, &profile_scratch};
  void *partial_aligned_args[] = {&x, &count, &tmean, &m2, &c, &hw, &s_n, &s_c, &n_cblocks, &n_tiles,
                                  &scratch, &profile_scratch};
  const cs_loaded_kernel *partial = find_row_kernel(kernels, CS_ROLE_PARTIAL, d->dtype, 0, 0, want_aligned);
  int partial_aligned = partial && partial->image->aligned;
  rc = launch(partial, (unsigned)rows, (unsigned)n_tiles, partial_aligned ? partial_aligned_args : partial_args,
              partial_aligned ? 12 : 13, stream, "partial statistics kernel");
  if (rc != CUDA_SUCCESS) return rc;

  const cs_loaded_kernel *combine = NULL;
  for (int block_t = 1; block_t <= CS_MAX_TILES && !combine; block_t *= 2) {
    if (block_t >= n_tiles) combine = find(kernels, CS_ROLE_COMBINE, -1, 0, 0, 0, block_t);
  }
  int block_r = combine ? combine->image->block_r : 1;
  void *combine_args[] = {&count, &tmean, &m2, &mean, &rstd, &rows, &n_tiles, &eps, &scratch, &profile_scratch};
  rc = launch(combine, (unsigned)((rows + block_r - 1) / block_r), 1, combine_args, 10, stream,
              "statistics merge kernel");
  if (rc != CUDA_SUCCESS) return rc;

  CUdeviceptr skip_or_x = d->has_skip ? skip : x;
  void *apply_args[] = {&x, &skip_or_x, &out, &mean, &rstd, &c, &hw, &s_n, &s_c, &s_hw, &n_cblocks,
                        &scratch, &profile_scratch};
  void *apply_aligned_args[] = {&x, &skip_or_x, &out, &mean, &rstd, &c, &hw, &s_n, &s_c, &n_cblocks,
                                &scratch, &profile_scratch};
  const cs_loaded_kernel *apply =
      find_row_kernel(kernels, CS_ROLE_APPLY, d->dtype, d->act, d->has_skip ? 1 : 0, want_aligned);
  int apply_aligned = apply && apply->image->aligned;
  return launch(apply, (unsigned)rows, (unsigned)n_tiles, apply_aligned ? apply_aligned_args : apply_args,
                apply_aligned ? 12 : 13, stream, "normalize kernel");
}
