#!/usr/bin/env bash
# System packages that real-component tests use (the Noto Color Emoji font for the emoji data tests,
# Debian's chromium for the `serve` browser test), installed where this can be done (root with apt-get);
# elsewhere those tests skip with the reason.
# Part of the README's test command; never fails it.
font=/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf
if [ ! -f "$font" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-color-emoji; } \
      >/dev/null 2>&1; then
    echo "tests/system_packages.sh: could not install fonts-noto-color-emoji; the Noto tests will skip" >&2
  fi
fi
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1; then
    echo "tests/system_packages.sh: could not install chromium; the serve browser test will skip" >&2
  fi
fi
# Independent media producers and servers for the media and live-stream tests: Debian's FFmpeg/ffprobe,
# libheif's heif-enc, ImageMagick, GStreamer with its RTSP server (driven by the system python3-gi in a
# separate process), nginx with the RTMP module, and the cockatoo clip of python3-imageio.
media="ffmpeg libheif-examples imagemagick gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0
  python3-gi nginx-light libnginx-mod-rtmp python3-imageio"
if ! command -v ffprobe >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  # shellcheck disable=SC2086
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $media; } \
      >/dev/null 2>&1; then
    echo "tests/system_packages.sh: could not install the media tools ($media); the tests that use them will skip" >&2
  fi
fi
exit 0
