#!/usr/bin/env bash
# Builds the Linux x86-64 release binary against an old glibc baseline (cargo zigbuild, target
# x86_64-unknown-linux-gnu.2.28) and assembles the Functions deployment zip:
#   dist/defender-responder.zip
#     host.json
#     <Function>/function.json        (every top-level folder that has a function.json)
#     <defaultExecutablePath>         (the binary, mode 0755, where host.json says it is)
# The zip is what `az functionapp deployment source config-zip` publishes on Flex Consumption,
# and what Elastic Premium runs from once uploaded to its package blob; see docs/deploy.md.
# Run from anywhere inside a clone:  scripts/package.sh
#
# The packaging FAILS when the binary needs a newer glibc than the baseline (its GLIBC_x.y
# version needs, read with objdump or readelf): Functions images based on Debian 11 ship glibc
# 2.31 and would refuse to start it. zig (PyPI `ziglang`) and cargo-zigbuild (crates.io) are
# installed by scripts/ensure-zigbuild.sh when missing. scripts/check-old-glibc.sh proves the
# packaged binary starts in a Debian 11 root.
#
# Environment:
#   PACKAGE_GLIBC=2.28       the glibc baseline: the build targets it and the check enforces it
#   PACKAGE_SKIP_BUILD=1     reuse <target dir>/x86_64-unknown-linux-gnu/release/<bin> (CI caching)
#   CARGO_TARGET_DIR         cargo's target directory (default target/), as cargo reads it
#   PACKAGE_EXTRA_PATHS="a b" extra repo-relative files/dirs to add (e.g. a policy file)
#   SOURCE_DATE_EPOCH        timestamp for zip entries (default: last commit time), for
#                            reproducible archives.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"

target="x86_64-unknown-linux-gnu"
glibc="${PACKAGE_GLIBC:-2.28}"
bin_name="defender-responder"
out_dir="${repo_root}/dist"
zip_path="${out_dir}/defender-responder.zip"

if [[ ! -f host.json ]]; then
  echo "package: host.json not found at ${repo_root}" >&2
  exit 1
fi

if [[ "${PACKAGE_SKIP_BUILD:-0}" != "1" ]]; then
  if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx "${target}"; then
    echo "package: installing Rust target ${target}" >&2
    rustup target add "${target}"
  fi
  if [[ ! -f Cargo.lock ]]; then
    echo "package: Cargo.lock is missing; it must be committed for a --locked build" >&2
    exit 1
  fi
  scripts/ensure-zigbuild.sh
  # --locked: build exactly the committed Cargo.lock (fails if it is missing or stale). zig
  # links against glibc ${glibc}'s symbol versions, whatever the build machine's glibc is.
  echo "package: cargo zigbuild --release --target ${target}.${glibc} (a few minutes cold)" >&2
  cargo zigbuild --release --locked --target "${target}.${glibc}" --bin "${bin_name}"
fi

binary="${CARGO_TARGET_DIR:-target}/${target}/release/${bin_name}"
if [[ ! -x "${binary}" ]]; then
  echo "package: ${binary} not found (build failed or PACKAGE_SKIP_BUILD without a build)" >&2
  exit 1
fi

# The glibc symbol versions the binary needs (its .gnu.version_r entries).
if command -v objdump > /dev/null 2>&1; then
  needs=$(objdump -p "${binary}" | grep -oE 'GLIBC_[0-9]+(\.[0-9]+)+' || true)
elif command -v readelf > /dev/null 2>&1; then
  needs=$(readelf --version-info --wide "${binary}" | sed -n '/Version needs section/,$p' \
    | grep -oE 'GLIBC_[0-9]+(\.[0-9]+)+' || true)
else
  echo "package: objdump or readelf (binutils) is needed to check the binary's glibc needs" >&2
  exit 1
fi
newest=$(printf '%s\n' ${needs} | sed 's/^GLIBC_//' | sort -uV | tail -n 1)
if [[ -n "${newest}" ]] && [[ "$(printf '%s\n%s\n' "${glibc}" "${newest}" | sort -V | tail -n 1)" != "${glibc}" ]]; then
  echo "package: FAILED: ${binary} needs GLIBC_${newest}, newer than the baseline ${glibc}." >&2
  echo "  A system with an older glibc refuses to start it ('version GLIBC_${newest} not found');" >&2
  echo "  Functions images based on Debian 11 ship glibc 2.31. Build with cargo zigbuild (this" >&2
  echo "  script does), not cargo build; raise PACKAGE_GLIBC only if every target image has it." >&2
  echo "  Symbols: $(printf '%s\n' ${needs} | sort -uV | tail -n 3 | tr '\n' ' ')" >&2
  exit 1
fi
export PACKAGE_GLIBC_NOTE="${newest:+needs GLIBC_${newest}, baseline ${glibc}}"

if [[ -z "${SOURCE_DATE_EPOCH:-}" ]]; then
  SOURCE_DATE_EPOCH="$(git log -1 --format=%ct 2>/dev/null || echo 315532800)"
fi
export SOURCE_DATE_EPOCH

mkdir -p "${out_dir}"
# python3's zipfile rather than zip(1): it sets the Unix mode bits explicitly (the binary must be
# executable after the platform unpacks or mounts the zip), fixes timestamps and entry order.
python3 - "${binary}" "${zip_path}" <<'PY'
import json, os, stat, sys, time, zipfile
from pathlib import Path

binary, zip_path = Path(sys.argv[1]), Path(sys.argv[2])
root = Path.cwd()

host = json.loads((root / "host.json").read_text())
try:
    exe = host["customHandler"]["description"]["defaultExecutablePath"]
except KeyError:
    sys.exit("package: host.json has no customHandler.description.defaultExecutablePath")
exe_path = Path(exe)
if exe_path.is_absolute() or ".." in exe_path.parts or not exe.strip():
    sys.exit(f"package: defaultExecutablePath {exe!r} must be a relative path inside the app")

# ELF64, x86-64: the Functions Linux workers run amd64.
head = binary.read_bytes()[:20]
if head[:4] != b"\x7fELF" or head[4] != 2 or int.from_bytes(head[18:20], "little") != 0x3E:
    sys.exit(f"package: {binary} is not an x86-64 ELF binary")

glibc_note = os.environ.get("PACKAGE_GLIBC_NOTE") or "no glibc symbol versions"

functions = sorted(p.parent.name for p in root.glob("*/function.json")
                   if not p.parent.name.startswith("."))
if not functions:
    sys.exit("package: no top-level <Function>/function.json folders found")
for name in functions:
    json.loads((root / name / "function.json").read_text())  # must be valid JSON

entries = [("host.json", root / "host.json", 0o644)]
entries += [(f"{name}/function.json", root / name / "function.json", 0o644) for name in functions]
for extra in os.environ.get("PACKAGE_EXTRA_PATHS", "").split():
    src = root / extra
    if not src.exists():
        sys.exit(f"package: PACKAGE_EXTRA_PATHS entry {extra!r} does not exist")
    files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
    entries += [(p.relative_to(root).as_posix(), p, 0o644) for p in files]
entries.append((exe_path.as_posix(), binary, 0o755))

names = [e[0] for e in entries]
dupes = sorted({n for n in names if names.count(n) > 1})
if dupes:
    sys.exit(f"package: duplicate archive entries {dupes}")

epoch = max(int(os.environ["SOURCE_DATE_EPOCH"]), 315532800)  # zip cannot encode < 1980
stamp = time.gmtime(epoch)[:6]
tmp = zip_path.with_suffix(".zip.tmp")
with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
    for arcname, src, mode in sorted(entries):
        info = zipfile.ZipInfo(arcname, date_time=stamp)
        info.create_system = 3  # Unix, so external_attr carries st_mode
        info.external_attr = (stat.S_IFREG | mode) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, src.read_bytes())
tmp.replace(zip_path)

# Re-read what was written: the binary is there and executable.
with zipfile.ZipFile(zip_path) as zf:
    info = zf.getinfo(exe_path.as_posix())
    assert (info.external_attr >> 16) & 0o111, "binary lost its exec bit"
    assert zf.testzip() is None
    listing = [(i.filename, oct((i.external_attr >> 16) & 0o777), i.file_size) for i in zf.infolist()]

print(f"package: functions {', '.join(functions)}; executable {exe} ({glibc_note})")
for name, mode, size in listing:
    print(f"  {mode} {size:>10}  {name}")
PY

size_bytes=$(stat -c %s "${zip_path}")
echo "${zip_path} ${size_bytes} bytes ($(( (size_bytes + 1023) / 1024 )) KiB)"
