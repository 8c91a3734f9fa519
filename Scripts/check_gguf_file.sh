# Sourced by the Scripts/fetch-*-model.sh scripts: check_gguf_file PYTHON FILE SIZE TENSORS SHA256
# checks a joined GGUF's size, header (magic, version 3, tensor count) and SHA-256, and exits 1
# with one line naming the file and what differs.
check_gguf_file() {
  local python=$1 file=$2 want_size=$3 want_tensors=$4 want_sha=$5 size sha
  size=$(stat -c %s "$file")
  [ "$size" = "$want_size" ] || { echo "error: $file: $size bytes, expected $want_size" >&2; exit 1; }
  "$python" - "$file" "$want_tensors" <<'PY'
import struct, sys
path, want = sys.argv[1], int(sys.argv[2])
with open(path, "rb") as f:
    magic, version, n_tensors = struct.unpack("<4sIQ", f.read(16))
if magic != b"GGUF" or version != 3 or n_tensors != want:
    sys.exit(f"error: {path}: header {magic!r} v{version} with {n_tensors} tensors, expected b'GGUF' v3 with {want}")
PY
  sha=$(sha256sum "$file" | cut -c1-64)
  [ "$sha" = "$want_sha" ] || { echo "error: $file: sha256 $sha, expected $want_sha" >&2; exit 1; }
}
