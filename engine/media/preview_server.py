"""A live preview anyone can open: MJPEG over HTTP on localhost, input beside output.

``/`` is a small page, ``/stream.mjpg`` the multipart/x-mixed-replace stream, ``/frame.jpg`` the
latest frame alone.  Frames are JPEG-encoded at most ``max_fps`` times a second, off the sink's
thread, so a slow viewer never slows the pipeline down.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image

from cyclestream.engine.errors import CycleStreamError
from cyclestream.engine.media.frame import TranslatedFrame

log = logging.getLogger("cyclestream")

PAGE = b"""<!doctype html><html><head><title>cyclestream live</title>
<style>body{background:#181818;color:#ddd;font-family:sans-serif;margin:1em}img{max-width:100%}</style>
</head><body><p>cyclestream live preview: input | output</p><img src="/stream.mjpg"></body></html>"""


def parse_listen(text: str) -> tuple[str, int]:
    """':8080' → ('127.0.0.1', 8080); 'HOST:PORT' as given."""
    host, _, port = text.rpartition(":")
    try:
        return host or "127.0.0.1", int(port)
    except ValueError:
        raise CycleStreamError(f"--preview wants [HOST]:PORT such as :8080, got {text!r}") from None


class PreviewServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 8080, max_fps: float = 15.0) -> None:
        self._jpeg: bytes | None = None
        self._seq = 0
        self._cond = threading.Condition()
        self._pending: tuple[np.ndarray, np.ndarray] | None = None
        self._closed = False
        self.max_fps = max_fps
        try:
            self.httpd = ThreadingHTTPServer((host, port), self._handler())
        except OSError as e:
            raise CycleStreamError(f"cannot serve the preview on {host}:{port}: {e.strerror or e}") from None
        self.httpd.daemon_threads = True
        self.address = self.httpd.server_address[:2]
        threading.Thread(target=self.httpd.serve_forever, name="cyclestream-preview-http", daemon=True).start()
        threading.Thread(target=self._encode_loop, name="cyclestream-preview-jpeg", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{self.address[0]}:{self.address[1]}/"

    def offer(self, frame: TranslatedFrame) -> None:
        """Called by the sink for every written frame; keeps only the newest."""
        with self._cond:
            self._pending = (frame.source.image, frame.image)
            self._cond.notify_all()

    def _encode_loop(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                pair, self._pending = self._pending, None
            side = np.concatenate([pair[0], pair[1]], axis=1) if pair[0].shape == pair[1].shape else pair[1]
            buf = io.BytesIO()
            Image.fromarray(side).save(buf, format="JPEG", quality=80)
            with self._cond:
                self._jpeg, self._seq = buf.getvalue(), self._seq + 1
                self._cond.notify_all()
            time.sleep(1.0 / self.max_fps)

    def _next_jpeg(self, after: int, timeout: float) -> tuple[int, bytes | None]:
        with self._cond:
            self._cond.wait_for(lambda: self._seq > after or self._closed, timeout)
            return self._seq, self._jpeg

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                log.debug("preview: " + format, *args)

            def do_GET(self) -> None:
                if self.path == "/":
                    self._send(200, "text/html; charset=utf-8", PAGE)
                elif self.path == "/frame.jpg":
                    _, jpeg = server._next_jpeg(0, timeout=5.0)
                    if jpeg is None:
                        self._send(503, "text/plain", b"no frame yet")
                    else:
                        self._send(200, "image/jpeg", jpeg)
                elif self.path == "/stream.mjpg":
                    self._stream()
                else:
                    self._send(404, "text/plain", b"not found")

            def _send(self, code: int, kind: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def _stream(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                seq = 0
                try:
                    while not server._closed:
                        seq, jpeg = server._next_jpeg(seq, timeout=1.0)
                        if jpeg is None:
                            continue
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n")
                        self.wfile.write(f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the viewer left

        return Handler

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()
