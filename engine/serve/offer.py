"""What ``POST /offer`` accepts: ``{"sdp": "...", "type": "offer"}`` whose SDP can be answered safely.

Everything a peer may send is refused here with one sentence (``BadOffer``), before aiortc sees it:
bytes that are not JSON (nested too deeply included), JSON of another shape, SDP that cannot be read,
SDP that sends no video, and SDP with a media section that carries no DTLS fingerprint aiortc can
check.  Without a fingerprint aiortc would answer and then fail inside its DTLS transport (and the
fingerprint is what ties the encrypted connection to this signalling exchange); an offer without
video would be answered, and a peer connection closed while it connects fails inside aiortc too.
"""

from __future__ import annotations

import json

from aiortc.rtcdtlstransport import X509_DIGEST_ALGORITHMS
from aiortc.sdp import SessionDescription

NO_VIDEO = "the offer sends no video: the page sends your camera"
SENDING = (None, "sendrecv", "sendonly")  # a media section's direction (none written: sendrecv)


class BadOffer(ValueError):
    """An offer that is refused; the message says why, in one line."""


def read_offer(body: bytes) -> str:
    """The SDP of an offer sent as ``body``; ``BadOffer`` if it cannot be answered."""
    try:
        params = json.loads(body)
    except RecursionError:
        raise BadOffer("the offer is not JSON of an offer (nested too deeply)") from None
    except ValueError:  # UnicodeDecodeError included
        raise BadOffer("the offer is not JSON") from None
    if not (isinstance(params, dict) and params.get("type") == "offer" and isinstance(params.get("sdp"), str)):
        raise BadOffer('expected {"sdp": "...", "type": "offer"}')
    sdp: str = params["sdp"]
    check_sdp(sdp)
    return sdp


def check_sdp(sdp: str) -> None:
    try:
        description = SessionDescription.parse(sdp)
    except Exception:  # aiortc's parser fails with whatever the text trips (asserts, unpacking, keys)
        raise BadOffer("the offer's SDP cannot be read") from None
    if not description.media:
        raise BadOffer("the offer's SDP has no media section")
    if not any(m.kind == "video" and m.port != 0 and m.direction in SENDING for m in description.media):
        raise BadOffer(NO_VIDEO)
    for media in description.media:
        fingerprints = media.dtls.fingerprints if media.dtls is not None else []
        if not any(f.algorithm.lower() in X509_DIGEST_ALGORITHMS for f in fingerprints):
            raise BadOffer(f"the offer's {media.kind[:20]} section has no DTLS fingerprint "
                           f"(a=fingerprint: {', '.join(sorted(X509_DIGEST_ALGORITHMS))}; with a=setup): "
                           "the connection could not be authenticated")
