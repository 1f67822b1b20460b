// CycleStreamInstanceNorm TensorRT plugin (TensorRT 10.x, IPluginV3 + IPluginCreatorV3One): validates fields and
// shapes and forwards enqueue() to cs_instance_norm_enqueue() of native/instance_norm/cs_instance_norm.h.
#include "instance_norm_plugin.h"

#include "../instance_norm/cs_instance_norm.h"

#include <atomic>
#include <cinttypes>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>

namespace cyclestream::trt
{
namespace
{

using nvinfer1::DataType;
using nvinfer1::Dims;
using nvinfer1::PluginField;
using nvinfer1::PluginFieldType;
using Severity = nvinfer1::ILogger::Severity;

std::atomic<nvinfer1::ILoggerFinder*> gLoggerFinder{nullptr};

// printf-style error report, prefixed with the plugin name; formats into a stack buffer, so it cannot throw.
#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
void logError(char const* format, ...) noexcept
{
    char message[1024];
    int const prefix = std::snprintf(message, sizeof(message), "%s: ", kINSTANCE_NORM_PLUGIN_NAME);
    std::va_list args;
    va_start(args, format);
    std::vsnprintf(message + prefix, sizeof(message) - static_cast<size_t>(prefix), format, args);
    va_end(args);
    logMessage(Severity::kERROR, message);
}

// ---- fields -------------------------------------------------------------------------------------------------------

bool readFloat(PluginField const& field, float& value) noexcept
{
    if (field.data == nullptr || field.length != 1)
    {
        return false;
    }
    if (field.type == PluginFieldType::kFLOAT32)
    {
        std::memcpy(&value, field.data, sizeof(float));
        return true;
    }
    if (field.type == PluginFieldType::kFLOAT64)
    {
        double v{};
        std::memcpy(&v, field.data, sizeof(double));
        value = static_cast<float>(v);
        return true;
    }
    return false;
}

// The ONNX parser turns INT attributes into kINT32; kINT64 is accepted for callers that build fields themselves.
bool readInt(PluginField const& field, int64_t& value) noexcept
{
    if (field.data == nullptr || field.length != 1)
    {
        return false;
    }
    if (field.type == PluginFieldType::kINT32)
    {
        int32_t v{};
        std::memcpy(&v, field.data, sizeof(int32_t));
        value = v;
        return true;
    }
    if (field.type == PluginFieldType::kINT64)
    {
        std::memcpy(&value, field.data, sizeof(int64_t));
        return true;
    }
    return false;
}

bool readFlag(PluginField const& field, int32_t& flag) noexcept
{
    int64_t value{};
    if (!readInt(field, value))
    {
        logError("field '%s' must be one kINT32 (or kINT64) value", field.name);
        return false;
    }
    if (value != 0 && value != 1)
    {
        logError("field '%s' must be 0 or 1, got %" PRId64, field.name, value);
        return false;
    }
    flag = static_cast<int32_t>(value);
    return true;
}

// Fills `params` from `fc`; absent fields keep their defaults.  Logs and returns false on a bad field.
bool parseFields(nvinfer1::PluginFieldCollection const* fc, InstanceNormParams& params) noexcept
{
    int32_t const count = fc != nullptr ? fc->nbFields : 0;
    if (count > 0 && fc->fields == nullptr)
    {
        logError("createPlugin: null field array");
        return false;
    }
    for (int32_t i = 0; i < count; ++i)
    {
        PluginField const& field = fc->fields[i];
        char const* const name = field.name != nullptr ? field.name : "";
        bool ok = false;
        if (std::strcmp(name, "epsilon") == 0)
        {
            ok = readFloat(field, params.epsilon);
            if (!ok)
            {
                logError("field 'epsilon' must be one kFLOAT32 (or kFLOAT64) value");
            }
        }
        else if (std::strcmp(name, "activation") == 0)
        {
            ok = readFlag(field, params.activation);
        }
        else if (std::strcmp(name, "has_skip") == 0)
        {
            ok = readFlag(field, params.hasSkip);
        }
        else
        {
            logError("unknown field '%s'", name);
        }
        if (!ok)
        {
            return false;
        }
    }
    if (!std::isfinite(params.epsilon) || params.epsilon <= 0.0F)
    {
        logError("epsilon must be finite and > 0, got %g", static_cast<double>(params.epsilon));
        return false;
    }
    return true;
}

// ---- shapes -------------------------------------------------------------------------------------------------------

// Dense N, C, spatial... dims -> cs desc.  False for rank < 3, unresolved (-1) dims or an unsupported type.
bool makeDesc(Dims const& dims, DataType type, InstanceNormParams const& params, cs_instance_norm_desc& desc) noexcept
{
    if (dims.nbDims < 3 || dims.nbDims > Dims::MAX_DIMS)
    {
        return false;
    }
    int64_t hw = 1;
    for (int32_t i = 0; i < dims.nbDims; ++i)
    {
        int64_t const d = dims.d[i];
        if (d < 0)
        {
            return false;
        }
        if (i >= 2)
        {
            if (d != 0 && hw > std::numeric_limits<int64_t>::max() / d)
            {
                return false;
            }
            hw *= d;
        }
    }
    if (type == DataType::kFLOAT)
    {
        desc.dtype = CS_DTYPE_FLOAT32;
    }
    else if (type == DataType::kHALF)
    {
        desc.dtype = CS_DTYPE_FLOAT16;
    }
    else
    {
        return false;
    }
    desc.n = dims.d[0];
    desc.c = dims.d[1];
    desc.hw = hw;
    desc.act = params.activation != 0 ? CS_ACT_RELU : CS_ACT_NONE;
    desc.has_skip = params.hasSkip != 0 ? 1 : 0;
    desc.eps = params.epsilon;
    return true;
}

bool isEmpty(cs_instance_norm_desc const& desc) noexcept
{
    return desc.n == 0 || desc.c == 0 || desc.hw == 0;
}

// Builds the desc for `dims`/`type` and asks the kernel library whether it can run it.  An empty tensor is accepted
// (enqueue() skips it).  Logs why on failure.
bool validate(Dims const& dims, DataType type, InstanceNormParams const& params, char const* where) noexcept
{
    cs_instance_norm_desc desc{};
    if (!makeDesc(dims, type, params, desc))
    {
        logError("%s: unsupported x (rank %d, type %d): need rank >= 3, known dims, kFLOAT or kHALF", where,
            static_cast<int>(dims.nbDims), static_cast<int>(type));
        return false;
    }
    if (!isEmpty(desc) && cs_instance_norm_check(&desc) != 0)
    {
        logError("%s: n=%" PRId64 " c=%" PRId64 " hw=%" PRId64 " refused by the kernels: %s", where, desc.n, desc.c,
            desc.hw, cs_instance_norm_last_error());
        return false;
    }
    return true;
}

// Same rank, and the same extent wherever both are known (-1 is a wildcard at network-definition time).
bool compatibleDims(Dims const& a, Dims const& b) noexcept
{
    if (a.nbDims != b.nbDims || a.nbDims < 0 || a.nbDims > Dims::MAX_DIMS)
    {
        return false;
    }
    for (int32_t i = 0; i < a.nbDims; ++i)
    {
        if (a.d[i] >= 0 && b.d[i] >= 0 && a.d[i] != b.d[i])
        {
            return false;
        }
    }
    return true;
}

} // namespace

// ---- logging ------------------------------------------------------------------------------------------------------

void setLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept
{
    // Like NVIDIA's own plugin libraries: keep the first non-null finder.
    nvinfer1::ILoggerFinder* expected = nullptr;
    if (finder != nullptr)
    {
        gLoggerFinder.compare_exchange_strong(expected, finder);
    }
}

void logMessage(nvinfer1::ILogger::Severity severity, char const* message) noexcept
{
    try
    {
        nvinfer1::ILogger* logger = nullptr;
        if (nvinfer1::ILoggerFinder* finder = gLoggerFinder.load())
        {
            logger = finder->findLogger();
        }
        if (logger == nullptr)
        {
            logger = ::getLogger();
        }
        if (logger != nullptr)
        {
            logger->log(severity, message);
            return;
        }
        std::fprintf(stderr, "%s\n", message);
    }
    catch (...)
    {
    }
}

// ---- InstanceNormPlugin -------------------------------------------------------------------------------------------

InstanceNormPlugin::InstanceNormPlugin(InstanceNormParams const& params) noexcept
    : mParams(params)
{
}

nvinfer1::IPluginCapability* InstanceNormPlugin::getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
    case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
    case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

nvinfer1::IPluginV3* InstanceNormPlugin::clone() noexcept
{
    try
    {
        return new InstanceNormPlugin(*this);
    }
    catch (std::exception const& e)
    {
        logError("clone failed: %s", e.what());
    }
    catch (...)
    {
    }
    return nullptr;
}

nvinfer1::AsciiChar const* InstanceNormPlugin::getPluginName() const noexcept
{
    return kINSTANCE_NORM_PLUGIN_NAME;
}

nvinfer1::AsciiChar const* InstanceNormPlugin::getPluginVersion() const noexcept
{
    return kINSTANCE_NORM_PLUGIN_VERSION;
}

nvinfer1::AsciiChar const* InstanceNormPlugin::getPluginNamespace() const noexcept
{
    return kINSTANCE_NORM_PLUGIN_NAMESPACE;
}

int32_t InstanceNormPlugin::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    if (in == nullptr || nbInputs != expectedInputs() || nbOutputs != 1)
    {
        logError("configurePlugin: expected %d input(s) and 1 output", expectedInputs());
        return -1;
    }
    if (mParams.hasSkip != 0
        && (!compatibleDims(in[0].desc.dims, in[1].desc.dims) || !compatibleDims(in[0].max, in[1].max)))
    {
        logError("configurePlugin: skip must have the shape of x");
        return -1;
    }
    // The largest shape of the profile bounds the row length the kernels must handle.
    return validate(in[0].max, in[0].desc.type, mParams, "configurePlugin (profile max)") ? 0 : -1;
}

int32_t InstanceNormPlugin::getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
    nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (outputTypes == nullptr || inputTypes == nullptr || nbOutputs != 1 || nbInputs != expectedInputs())
    {
        return -1;
    }
    outputTypes[0] = inputTypes[0];
    return 0;
}

int32_t InstanceNormPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, nvinfer1::DimsExprs* outputs,
    int32_t nbOutputs, nvinfer1::IExprBuilder& /*exprBuilder*/) noexcept
{
    if (inputs == nullptr || outputs == nullptr || nbInputs != expectedInputs() || nbOutputs != 1)
    {
        logError("expected %d input(s) (has_skip=%d) and 1 output, got %d input(s)", expectedInputs(),
            static_cast<int>(mParams.hasSkip), static_cast<int>(nbInputs));
        return -1;
    }
    if (inputs[0].nbDims < 3)
    {
        logError("x must have rank >= 3 ([N, C, H, W]), got rank %d", static_cast<int>(inputs[0].nbDims));
        return -1;
    }
    if (mParams.hasSkip != 0 && inputs[1].nbDims != inputs[0].nbDims)
    {
        logError("skip must have the rank of x");
        return -1;
    }
    outputs[0] = inputs[0];
    return 0;
}

bool InstanceNormPlugin::supportsFormatCombination(
    int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (inOut == nullptr || nbInputs != expectedInputs() || nbOutputs != 1 || pos < 0 || pos >= nbInputs + nbOutputs)
    {
        return false;
    }
    nvinfer1::PluginTensorDesc const& desc = inOut[pos].desc;
    if (desc.format != nvinfer1::TensorFormat::kLINEAR)
    {
        return false;
    }
    if (pos == 0)
    {
        return desc.type == DataType::kFLOAT || desc.type == DataType::kHALF;
    }
    return desc.type == inOut[0].desc.type;
}

int32_t InstanceNormPlugin::getNbOutputs() const noexcept
{
    return 1;
}

size_t InstanceNormPlugin::getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    cs_instance_norm_desc desc{};
    if (inputs == nullptr || nbInputs < 1 || !makeDesc(inputs[0].max, inputs[0].desc.type, mParams, desc)
        || isEmpty(desc))
    {
        return 0;
    }
    return cs_instance_norm_workspace_size(&desc);
}

int32_t InstanceNormPlugin::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::PluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    if (in == nullptr || nbInputs != expectedInputs() || nbOutputs != 1)
    {
        logError("onShapeChange: expected %d input(s) and 1 output", expectedInputs());
        return -1;
    }
    if (mParams.hasSkip != 0 && !compatibleDims(in[0].dims, in[1].dims))
    {
        logError("onShapeChange: skip must have the shape of x");
        return -1;
    }
    return validate(in[0].dims, in[0].type, mParams, "onShapeChange") ? 0 : -1;
}

int32_t InstanceNormPlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
    nvinfer1::PluginTensorDesc const* /*outputDesc*/, void const* const* inputs, void* const* outputs, void* workspace,
    cudaStream_t stream) noexcept
{
    cs_instance_norm_desc desc{};
    if (inputDesc == nullptr || inputs == nullptr || outputs == nullptr
        || !makeDesc(inputDesc[0].dims, inputDesc[0].type, mParams, desc))
    {
        logError("enqueue: invalid arguments or input shape");
        return -1;
    }
    if (isEmpty(desc))
    {
        return 0;
    }
    // cudaStream_t and CUstream are the same handle (struct CUstream_st*); device pointers are plain addresses.
    CUdeviceptr const x = reinterpret_cast<CUdeviceptr>(inputs[0]);
    CUdeviceptr const skip = desc.has_skip != 0 ? reinterpret_cast<CUdeviceptr>(inputs[1]) : CUdeviceptr{0};
    CUdeviceptr const out = reinterpret_cast<CUdeviceptr>(outputs[0]);
    CUdeviceptr const ws = reinterpret_cast<CUdeviceptr>(workspace);
    CUresult const status = cs_instance_norm_enqueue(&desc, x, skip, out, ws, reinterpret_cast<CUstream>(stream));
    if (status != CUDA_SUCCESS)
    {
        logError("enqueue failed (CUresult %d): %s", static_cast<int>(status), cs_instance_norm_last_error());
        return -1;
    }
    return 0;
}

nvinfer1::IPluginV3* InstanceNormPlugin::attachToContext(nvinfer1::IPluginResourceContext* /*context*/) noexcept
{
    return clone();
}

nvinfer1::PluginFieldCollection const* InstanceNormPlugin::getFieldsToSerialize() noexcept
{
    mSerialFields[0] = PluginField("epsilon", &mParams.epsilon, PluginFieldType::kFLOAT32, 1);
    mSerialFields[1] = PluginField("activation", &mParams.activation, PluginFieldType::kINT32, 1);
    mSerialFields[2] = PluginField("has_skip", &mParams.hasSkip, PluginFieldType::kINT32, 1);
    mSerialCollection.nbFields = static_cast<int32_t>(mSerialFields.size());
    mSerialCollection.fields = mSerialFields.data();
    return &mSerialCollection;
}

// ---- InstanceNormPluginCreator ------------------------------------------------------------------------------------

InstanceNormPluginCreator::InstanceNormPluginCreator() noexcept
    : mFieldNames{{PluginField("epsilon", nullptr, PluginFieldType::kFLOAT32, 1),
        PluginField("activation", nullptr, PluginFieldType::kINT32, 1),
        PluginField("has_skip", nullptr, PluginFieldType::kINT32, 1)}}
{
    mFieldCollection.nbFields = static_cast<int32_t>(mFieldNames.size());
    mFieldCollection.fields = mFieldNames.data();
}

nvinfer1::IPluginV3* InstanceNormPluginCreator::createPlugin(
    nvinfer1::AsciiChar const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase /*phase*/) noexcept
{
    // Build phase (network definition / ONNX parser) and runtime phase (deserialization, fed with
    // getFieldsToSerialize()) carry the same three fields.
    try
    {
        InstanceNormParams params;
        if (!parseFields(fc, params))
        {
            logError("createPlugin('%s') failed: bad fields (see above)", name != nullptr ? name : "");
            return nullptr;
        }
        return new InstanceNormPlugin(params);
    }
    catch (std::exception const& e)
    {
        logError("createPlugin failed: %s", e.what());
    }
    catch (...)
    {
    }
    return nullptr;
}

nvinfer1::PluginFieldCollection const* InstanceNormPluginCreator::getFieldNames() noexcept
{
    return &mFieldCollection;
}

nvinfer1::AsciiChar const* InstanceNormPluginCreator::getPluginName() const noexcept
{
    return kINSTANCE_NORM_PLUGIN_NAME;
}

nvinfer1::AsciiChar const* InstanceNormPluginCreator::getPluginVersion() const noexcept
{
    return kINSTANCE_NORM_PLUGIN_VERSION;
}

nvinfer1::AsciiChar const* InstanceNormPluginCreator::getPluginNamespace() const noexcept
{
    return kINSTANCE_NORM_PLUGIN_NAMESPACE;
}

} // namespace cyclestream::trt
