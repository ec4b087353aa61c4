#!/usr/bin/env bash
# Builds the demo image: demo-app compiled as a static executable, in a FROM scratch image.
#
#   examples/demo/build.sh [IMAGE]        IMAGE defaults to composure-demo:latest
#
# Only the x86_64-unknown-linux-gnu target is needed: `+crt-static` links glibc statically.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
image=${1:-composure-demo:latest}
target=x86_64-unknown-linux-gnu

cd "$root"
echo "==> building demo-app as a static executable"
RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked -p demo-app --target "$target"

target_dir=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
binary="$target_dir/$target/release/demo-app"
# A dynamically linked binary would not start in a scratch image: say so now, not then.
if command -v file >/dev/null && ! file "$binary" | grep -q 'static'; then
    echo "error: $binary is not statically linked: $(file -b "$binary")" >&2
    exit 1
fi

# The binary goes next to the Dockerfile (git ignores it), so that compose's `build: .`
# finds it too.
cp "$binary" "$here/demo-app"
echo "==> docker build -t $image $here"
docker build -t "$image" "$here"
