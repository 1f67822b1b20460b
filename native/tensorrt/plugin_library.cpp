// Entry points of libcyclestream_trt_plugins.so (TensorRT 10.x), the library holding the CycleStreamInstanceNorm
// IPluginV3 creator.  Two ways of loading it are supported, from the one .so:
//
//  * dynamic: IPluginRegistry::loadLibrary(path) (C++), trt.get_plugin_registry().load_library(path) (Python) and
//    `trtexec --dynamicPlugins=...` dlopen the library and look up the extern "C" symbols
//        IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)   (IPluginV3-era creators)
//        void setLoggerFinder(ILoggerFinder* finder)
//    (the pair NVIDIA's own plugin/vc/vfcCommon.cpp exports; getPluginCreators() is the IPluginV2-era name and is
//    not needed for a V3 creator).
//  * static: `trtexec --staticPlugins=...` (and ctypes.CDLL / linking) only dlopen the library, so the creator has to
//    register itself while the library loads, which is what REGISTER_TENSORRT_PLUGIN does (it works for
//    IPluginCreatorV3One in 10.x: PluginRegistrar calls registerCreator(IPluginCreatorInterface&, "")).
//
// The two must not both register the same creator: loadLibrary() fails if a plugin it would register is already
// registered, and when the library is loaded through loadLibrary() the static registration has already put the
// creator into the global registry.  So instead of REGISTER_TENSORRT_PLUGIN this file uses its own registrar that
//   - registers the creator into the global registry when the library loads, unless the environment variable
//     CYCLESTREAM_TRT_NO_STATIC_REGISTRATION is set (non-empty, not "0");
//   - deregisters it when the library is unloaded (REGISTER_TENSORRT_PLUGIN does not, which leaves a dangling
//     creator after deregisterLibrary() dlcloses the library);
// and getCreators() hands TensorRT no creator when the static registration succeeded: the creator is then already
// visible from every builder/runtime registry through the global (parent) registry.
#include "instance_norm_plugin.h"

#include <cstdint>
#include <cstdlib>

#if defined(_WIN32)
#define CS_TRT_EXPORT __declspec(dllexport)
#else
#define CS_TRT_EXPORT __attribute__((visibility("default")))
#endif

namespace
{

using cyclestream::trt::InstanceNormPluginCreator;

InstanceNormPluginCreator& instanceNormCreator() noexcept
{
    static InstanceNormPluginCreator creator;
    return creator;
}

bool staticRegistrationDisabled() noexcept
{
    char const* const value = std::getenv("CYCLESTREAM_TRT_NO_STATIC_REGISTRATION");
    return value != nullptr && value[0] != '\0' && !(value[0] == '0' && value[1] == '\0');
}

class StaticRegistration
{
public:
    StaticRegistration() noexcept
    {
        if (staticRegistrationDisabled())
        {
            return;
        }
        nvinfer1::IPluginRegistry* const registry = ::getPluginRegistry();
        mRegistered = registry != nullptr
            && registry->registerCreator(instanceNormCreator(), cyclestream::trt::kINSTANCE_NORM_PLUGIN_NAMESPACE);
        if (!mRegistered)
        {
            cyclestream::trt::logMessage(nvinfer1::ILogger::Severity::kWARNING,
                "CycleStreamInstanceNorm: static registration in the global plugin registry failed (already "
                "registered?); getCreators() will offer the creator to IPluginRegistry::loadLibrary instead");
        }
    }

    ~StaticRegistration()
    {
        if (mRegistered)
        {
            if (nvinfer1::IPluginRegistry* const registry = ::getPluginRegistry())
            {
                registry->deregisterCreator(instanceNormCreator());
            }
        }
    }

    StaticRegistration(StaticRegistration const&) = delete;
    StaticRegistration& operator=(StaticRegistration const&) = delete;

    bool registered() const noexcept
    {
        return mRegistered;
    }

private:
    bool mRegistered{false};
};

// Constructed when the library is loaded (after instanceNormCreator()'s static, so destroyed before it).
StaticRegistration const gStaticRegistration;

} // namespace

extern "C" CS_TRT_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    cyclestream::trt::setLoggerFinder(finder);
}

extern "C" CS_TRT_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    static nvinfer1::IPluginCreatorInterface* const kCreators[] = {&instanceNormCreator()};
    nbCreators = gStaticRegistration.registered() ? 0 : static_cast<int32_t>(sizeof(kCreators) / sizeof(kCreators[0]));
    return kCreators;
}
