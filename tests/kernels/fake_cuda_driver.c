/* A stand-in for the CUDA driver API, for testing native/instance_norm/cs_instance_norm.c on a machine
 * without a GPU (tests/kernels/test_native_launcher.py).  It is not presented as CUDA: it implements
 * only the eight calls the launcher makes, records every module load and kernel launch, and decodes
 * each launch's parameters with the sizes the test gives per kernel role and alignment (the sizes the real cubins
 * declare, as test_aot.py checks with cuobjdump).  Contexts and the device's compute capability are
 * set by the test.
 */
#include <cuda.h>
#include <stdint.h>
#include <string.h>

#include "cs_kernel_images.h"

#define MAX_RECORDS 256
#define MAX_PARAMS 16

typedef struct {
  int role, dtype, act, has_skip, block_t, sm, is_ptx, aligned;
  unsigned grid[3], block[3], shared;
  uintptr_t stream;
  int n_params;
  uint64_t params[MAX_PARAMS];
} fake_launch;

static int g_sm = 80;
static uintptr_t g_context = 1;
static int g_loads = 0;
static const cs_kernel_image *g_modules[MAX_RECORDS];
static int g_n_modules = 0;
static int g_param_sizes[6][MAX_PARAMS]; /* [role * 2 + aligned] */
static int g_n_params[6];
static fake_launch g_launches[MAX_RECORDS];
static int g_n_launches = 0;
static CUresult g_fail_launch = CUDA_SUCCESS;

/* --- controls for the test (ctypes) ------------------------------------------------------------ */

void fake_set_device(int sm, int context) {
  g_sm = sm;
  g_context = (uintptr_t)context;
}
void fake_set_param_sizes(int role, int aligned, const int *sizes, int n) {
  g_n_params[role * 2 + aligned] = n;
  memcpy(g_param_sizes[role * 2 + aligned], sizes, (size_t)n * sizeof(int));
}
void fake_fail_launches(int code) { g_fail_launch = (CUresult)code; }
int fake_module_loads(void) { return g_loads; }
int fake_launch_count(void) { return g_n_launches; }
const fake_launch *fake_get_launch(int i) { return i < g_n_launches ? &g_launches[i] : NULL; }
void fake_reset_launches(void) { g_n_launches = 0; }

/* --- the driver calls the launcher makes --------------------------------------------------------- */

CUresult cuGetErrorString(CUresult error, const char **text) {
  *text = error == CUDA_ERROR_LAUNCH_FAILED ? "unspecified launch failure (fake)" : "fake driver error";
  return CUDA_SUCCESS;
}

CUresult cuCtxGetCurrent(CUcontext *context) {
  *context = (CUcontext)g_context;
  return CUDA_SUCCESS;
}

CUresult cuCtxGetDevice(CUdevice *device) {
  *device = 0;
  return CUDA_SUCCESS;
}

CUresult cuDeviceGetAttribute(int *value, CUdevice_attribute attribute, CUdevice device) {
  (void)device;
  if (attribute == CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR) *value = g_sm / 10;
  else if (attribute == CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR) *value = g_sm % 10;
  else return CUDA_ERROR_INVALID_VALUE;
  return CUDA_SUCCESS;
}

CUresult cuModuleLoadData(CUmodule *module, const void *image) {
  for (size_t i = 0; i < cs_kernel_image_count; ++i) {
    if (cs_kernel_images[i]->data == image && g_n_modules < MAX_RECORDS) {
      g_modules[g_n_modules] = cs_kernel_images[i];
      *module = (CUmodule)(uintptr_t)(++g_n_modules);
      ++g_loads;
      return CUDA_SUCCESS;
    }
  }
  return CUDA_ERROR_INVALID_IMAGE;
}

CUresult cuModuleGetFunction(CUfunction *function, CUmodule module, const char *name) {
  const cs_kernel_image *image = g_modules[(uintptr_t)module - 1];
  if (strcmp(image->symbol, name) != 0) return CUDA_ERROR_NOT_FOUND;
  *function = (CUfunction)(uintptr_t)module;
  return CUDA_SUCCESS;
}

CUresult cuModuleUnload(CUmodule module) {
  (void)module;
  return CUDA_SUCCESS;
}

CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned shared, CUstream stream, void **params, void **extra) {
  (void)extra;
  if (g_fail_launch != CUDA_SUCCESS) return g_fail_launch;
  if (g_n_launches == MAX_RECORDS) return CUDA_ERROR_OUT_OF_MEMORY;
  const cs_kernel_image *image = g_modules[(uintptr_t)f - 1];
  fake_launch *r = &g_launches[g_n_launches++];
  memset(r, 0, sizeof *r);
  r->role = image->role, r->dtype = image->dtype, r->act = image->act, r->has_skip = image->has_skip;
  r->block_t = image->block_t, r->sm = image->sm, r->is_ptx = image->is_ptx, r->aligned = image->aligned;
  r->grid[0] = gx, r->grid[1] = gy, r->grid[2] = gz;
  r->block[0] = bx, r->block[1] = by, r->block[2] = bz;
  r->shared = shared;
  r->stream = (uintptr_t)stream;
  const int kind = image->role * 2 + image->aligned;
  r->n_params = g_n_params[kind];
  for (int i = 0; i < r->n_params; ++i) { /* each value read with its declared size, as the GPU would */
    if (g_param_sizes[kind][i] == 4) {
      uint32_t v;
      memcpy(&v, params[i], 4);
      r->params[i] = v;
    } else {
      memcpy(&r->params[i], params[i], 8);
    }
  }
  return CUDA_SUCCESS;
}
