"""`cyclestream serve`: a browser's camera goes up over WebRTC, the translated video comes back.

    browser ──WebRTC (VP8/H.264)──▶ aiortc decoder ──av.VideoFrame──▶ Inbox (newest only)
        ──▶ Pipeline (live policy, per client) ──SharedClient──▶ SharedBackend (one model thread,
        the newest frame of every client in one call) ──▶ stabiliser ──▶ OutgoingTrack ──WebRTC──▶ browser

- ``engine/media/webrtc.py``: the PyAV boundary (a received frame → RGB at the model's size; RGB → a frame
  to send), the newest-frame inbox and the outgoing aiortc track.
- ``client.py``: one browser: its peer connection, its pipeline thread, its statistics.
- ``app.py``: the aiohttp app (the page, ``/offer``, ``/config``, ``/status``), the bounded client list.
- ``access.py``: who may ask: the ``Host`` names answered, the ``Origin`` check, this start's token.
- ``connections.py``: bounded HTTP connections (a deadline for each request's headers, a cap on how
  many are open) and aiohttp's errors in one log line.
- ``offer.py``: what ``/offer`` accepts (JSON of an offer whose SDP sends video and has DTLS fingerprints).
- ``probe.py``: a Python WebRTC client that sends known frames and measures what comes back
  (``cyclestream bench serve URL``).

The job itself (load, listen, prepare, run the loop, stop on Ctrl-C) is ``engine/jobs/serve.py``.
"""
