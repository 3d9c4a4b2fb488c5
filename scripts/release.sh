#!/usr/bin/env bash
# Publishes a release's artifacts from the built dist/plugin.wasm (run
# scripts/build.sh first): pushes the image in both forms, signs them with cosign
# (keyless, when SIGN=1), and writes dist/release/: plugin.wasm, its sha256,
# plugin.debug.wasm (the same module with its name section, to turn a trap's Wasm
# offsets into function names), the image digests, the istio/ manifests rendered with the compat image's digest, and
# release notes. The release workflow runs exactly this; locally:
#   scripts/release.sh 127.0.0.1:5000/proxy-wasm-lua --insecure
set -euo pipefail
cd "$(dirname "$0")/.."

repo=${1:?usage: scripts/release.sh REGISTRY/REPOSITORY [--insecure]}
shift
insecure=()
[ "${1:-}" = "--insecure" ] && insecure=(--insecure)

version=$(python3 -c 'import tomllib; print(tomllib.load(open("Cargo.toml", "rb"))["package"]["version"])')
if [ -n "${RELEASE_TAG:-}" ] && [ "$RELEASE_TAG" != "v$version" ]; then
  echo "release: tag $RELEASE_TAG does not match Cargo.toml version $version" >&2
  exit 1
fi

out=${RELEASE_DIR:-dist/release}
rm -rf "$out" && mkdir -p "$out"
cp dist/plugin.wasm "$out/plugin.wasm"
cp dist/plugin.debug.wasm "$out/plugin.debug.wasm"
(cd "$out" && sha256sum plugin.wasm > plugin.wasm.sha256)

push() { # form, tag -> manifest digest
  python3 scripts/oci_image.py push --form "$1" "${insecure[@]}" "$repo:$2" | sed -n 's/^manifest digest: //p'
}
compat=$(push compat "$version")
artifact=$(push artifact "$version-artifact")
[ -n "$compat" ] && [ -n "$artifact" ] || { echo "release: push failed" >&2; exit 1; }

if [ "${SIGN:-0}" = 1 ]; then
  cosign sign --yes "$repo@$compat"
  cosign sign --yes "$repo@$artifact"
fi

python3 scripts/render_manifests.py --image "$repo:$version" --sha256 "$compat" "$out/istio" > /dev/null

cat > "$out/digests.txt" <<DIGESTS
plugin.wasm sha256        $(cut -d' ' -f1 "$out/plugin.wasm.sha256")
$repo:$version            $compat
$repo:$version-artifact   $artifact
DIGESTS

cat > "$out/notes.md" <<NOTES
## proxy-wasm-lua $version

Image (compat form, what the manifests use): \`oci://$repo:$version\`
- WasmPlugin \`sha256\` for this image: \`${compat#sha256:}\`
- Two-layer Wasm artifact form: \`oci://$repo:$version-artifact\` (\`${artifact#sha256:}\`)
- \`plugin.wasm\` sha256 (for http(s):// URLs): \`$(cut -d' ' -f1 "$out/plugin.wasm.sha256")\`
- \`plugin.debug.wasm\`: the same module with its name section, for reading trap backtraces

Verify the signature: \`cosign verify $repo@$compat --certificate-identity-regexp '.*' --certificate-oidc-issuer https://token.actions.githubusercontent.com\`

The manifests attached here (\`istio/\`) are rendered with this digest.
NOTES
echo "release: wrote $out ($version; compat $compat, artifact $artifact)"
