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
exit 0
