// cyclestream's fused instance norm (native/instance_norm/cs_instance_norm.h) as a TensorRT plugin:
// out = skip + act(InstanceNorm(x)) over dense NCHW (or any N, C, spatial...) fp32/fp16 tensors.
//
// Targets TensorRT 10.x: IPluginV3 (IPluginV3OneCore / IPluginV3OneBuild / IPluginV3OneRuntime) with an
// IPluginCreatorV3One creator, available since TensorRT 10.0.  The overrides were checked against
// include/NvInferRuntime.h and include/NvInferPluginBase.h of NVIDIA/TensorRT at commit
// 2a387d69bae52cfb975fb630cf6daa21ddb6c86d (a 10.7+ header set).
//
// Plugin "CycleStreamInstanceNorm", version "1", namespace "".  Fields (creator and serialization):
//   epsilon    kFLOAT32 (kFLOAT64 accepted), default 1e-5, must be finite and > 0
//   activation kINT32 (kINT64 accepted), 0 none / 1 relu, default 0
//   has_skip   kINT32 (kINT64 accepted), 0 / 1, default 0; 1 adds a second input `skip` shaped like x
// The library entry points (getCreators, setLoggerFinder, static registration) are in plugin_library.cpp.
#ifndef CYCLESTREAM_TRT_INSTANCE_NORM_PLUGIN_H
#define CYCLESTREAM_TRT_INSTANCE_NORM_PLUGIN_H

#include <NvInferRuntime.h>

#include <array>
#include <cstddef>
#include <cstdint>

namespace cyclestream::trt
{

inline constexpr char const* kINSTANCE_NORM_PLUGIN_NAME = "CycleStreamInstanceNorm";
inline constexpr char const* kINSTANCE_NORM_PLUGIN_VERSION = "1";
inline constexpr char const* kINSTANCE_NORM_PLUGIN_NAMESPACE = "";

struct InstanceNormParams
{
    float epsilon{1e-5F};
    int32_t activation{0}; // 0: none, 1: relu (cs_act)
    int32_t hasSkip{0};    // 0 or 1
};

class InstanceNormPlugin final : public nvinfer1::IPluginV3,
                                 public nvinfer1::IPluginV3OneCore,
                                 public nvinfer1::IPluginV3OneBuild,
                                 public nvinfer1::IPluginV3OneRuntime
{
public:
    explicit InstanceNormPlugin(InstanceNormParams const& params) noexcept;
    InstanceNormPlugin(InstanceNormPlugin const& other) = default;
    InstanceNormPlugin& operator=(InstanceNormPlugin const&) = delete;
    ~InstanceNormPlugin() noexcept override = default;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    nvinfer1::AsciiChar const* getPluginName() const noexcept override;
    nvinfer1::AsciiChar const* getPluginVersion() const noexcept override;
    nvinfer1::AsciiChar const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t getNbOutputs() const noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    int32_t expectedInputs() const noexcept
    {
        return mParams.hasSkip != 0 ? 2 : 1;
    }

    InstanceNormParams mParams;
    // Filled by getFieldsToSerialize(); they point into this object, so they are rebuilt on every call.
    std::array<nvinfer1::PluginField, 3> mSerialFields{};
    nvinfer1::PluginFieldCollection mSerialCollection{};
};

class InstanceNormPluginCreator final : public nvinfer1::IPluginCreatorV3One
{
public:
    InstanceNormPluginCreator() noexcept;
    ~InstanceNormPluginCreator() override = default;

    nvinfer1::IPluginV3* createPlugin(nvinfer1::AsciiChar const* name, nvinfer1::PluginFieldCollection const* fc,
        nvinfer1::TensorRTPhase phase) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::AsciiChar const* getPluginName() const noexcept override;
    nvinfer1::AsciiChar const* getPluginVersion() const noexcept override;
    nvinfer1::AsciiChar const* getPluginNamespace() const noexcept override;

private:
    std::array<nvinfer1::PluginField, 3> mFieldNames;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

// Logging used by the plugin: the logger TensorRT hands out through ILoggerFinder (set when the library is loaded
// with IPluginRegistry::loadLibrary), else TensorRT's global ::getLogger(), else stderr.
void setLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept;
void logMessage(nvinfer1::ILogger::Severity severity, char const* message) noexcept;

} // namespace cyclestream::trt

#endif // CYCLESTREAM_TRT_INSTANCE_NORM_PLUGIN_H
