"""cyclestream: real-time CycleGAN translation of video files and live streams.

Importing this package is cheap: it imports no backend library (TensorRT, ONNX Runtime, Triton,
OpenVINO); each backend imports its own library when it is chosen.
"""

__version__ = "0.1.0"
