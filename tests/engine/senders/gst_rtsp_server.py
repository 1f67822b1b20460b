"""An RTSP server from GStreamer (GstRtspServer), independent of cyclestream and of FFmpeg.

Run with the system Python that has python3-gi: ``/usr/bin/python3 gst_rtsp_server.py PORT``.  It
serves ``rtsp://127.0.0.1:PORT/test``: a live test pattern, 160x120 at 15 fps, H.264 from x264 with
a keyframe every 15 frames, and prints ``ready`` once it listens.  Killing it is a server going down.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(sys.argv[1])
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    "( videotestsrc is-live=true pattern=ball ! video/x-raw,width=160,height=120,framerate=15/1 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 ! rtph264pay name=pay0 pt=96 )"
)
factory.set_shared(True)
server.get_mount_points().add_factory("/test", factory)
if server.attach(None) == 0:
    sys.exit(f"cannot listen on port {sys.argv[1]}")
print("ready", flush=True)
GLib.MainLoop().run()
