#!/usr/bin/env bash
# Static gate for infra/: Bicep syntax (pycep, the parser checkov uses) and checkov's Bicep policies.
#
# The Bicep CLI is not available in CI, so this is what stands between a typo and a failed
# deployment. Fails when:
#   * any .bicep file under infra/ does not parse (checked per file, so no file is silently ignored),
#   * a module call passes an undeclared parameter, misses a required one, or reads a missing output,
#   * checkov reports a parsing error, finds no resources, or any check FAILS,
#   * a checkov skip has no written justification (//checkov:skip=CKV_ID:reason, inside the resource),
#   * infra/main.bicepparam sets a parameter main.bicep does not declare,
#   * docs/deploy.md's parameter table misses a parameter of main.bicep,
#   * the app-settings / queue-names blocks the Rust drift test reads are missing or malformed.
# Usage: scripts/check-infra.sh            (from anywhere; needs python3, installs checkov if absent)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
infra_dir="${repo_root}/infra"
started=$(date +%s)

if ! python3 -c 'import checkov' 2>/dev/null || ! command -v checkov >/dev/null 2>&1; then
  echo "check-infra: installing checkov (python3 -m pip install --quiet checkov)" >&2
  python3 -m pip install --quiet checkov
fi

report="$(mktemp)"
trap 'rm -f "${report}"' EXIT

# Offline, deterministic run: no guideline download (BC_SKIP_MAPPING), no external modules.
# checkov exits 1 when a check fails; the JSON is judged below instead.
(cd "${repo_root}" && BC_SKIP_MAPPING=TRUE checkov --framework bicep -d infra --skip-download \
  -o json >"${report}" 2>"${report}.stderr") || true
if [[ ! -s "${report}" ]]; then
  echo "check-infra: checkov produced no JSON output:" >&2
  cat "${report}.stderr" >&2 || true
  rm -f "${report}.stderr"
  exit 2
fi
rm -f "${report}.stderr"

python3 - "${report}" "${infra_dir}" "${started}" <<'PY'
import json, re, sys, time
from pathlib import Path

report_path, infra_dir, started = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
problems = []

# 1. Every .bicep file parses with pycep (what checkov uses). pycep is stricter than Bicep in a few
#    places: no nullable types (`string?`), no lambdas except filter(), no toObject/map/reduce/items,
#    and at most 4 consecutive comment lines between two properties (9 at the top of an object).
from pycep import BicepParser
bicep_files = sorted(infra_dir.rglob("*.bicep"))
parsed = {}
for path in bicep_files:
    try:
        tree = BicepParser().parse(file_path=path)
        parsed[path] = tree
    except Exception as exc:  # lark.UnexpectedToken & co carry line/column
        problems.append(f"{path.relative_to(infra_dir.parent)}: does not parse: {str(exc).splitlines()[0]}")
if not bicep_files:
    problems.append("no .bicep files under infra/")

# 2. Module interfaces, which the Bicep compiler would check: every module call passes only
#    declared parameters and all required ones, and every <module>.outputs.X it reads exists.
def module_config(mod):
    cfg = mod.get("config", {})
    while isinstance(cfg, dict) and "condition" in cfg:  # `= if (cond) { ... }`
        cfg = cfg.get("config", {})
    return cfg if isinstance(cfg, dict) else {}
for path, tree in parsed.items():
    text = path.read_text()
    rel = path.relative_to(infra_dir.parent)
    for symbol, mod in (tree.get("modules") or {}).items():
        target = (path.parent / mod["detail"]["path"]).resolve()
        if target not in parsed:
            problems.append(f"{rel}: module {symbol} -> {mod['detail']['path']} not found or not parsed")
            continue
        declared_params = parsed[target].get("parameters") or {}
        passed = set((module_config(mod).get("params") or {}).keys())
        for name in sorted(passed - set(declared_params)):
            problems.append(f"{rel}: module {symbol} passes undeclared parameter {name}")
        for name, spec in declared_params.items():
            if spec.get("default") is None and name not in passed:
                problems.append(f"{rel}: module {symbol} misses required parameter {name}")
        outputs = set((parsed[target].get("outputs") or {}).keys())
        for name in sorted(set(re.findall(rf"\b{re.escape(symbol)}\.outputs\.(\w+)", text)) - outputs):
            problems.append(f"{rel}: {symbol}.outputs.{name} is not an output of {mod['detail']['path']}")

# 3. checkov verdict.
data = json.loads(Path(report_path).read_text())
runs = data if isinstance(data, list) else [data]
runs = [r for r in runs if r.get("check_type") == "bicep"]
if not runs:
    problems.append("checkov returned no bicep report")
summary = {"passed": 0, "failed": 0, "skipped": 0, "parsing_errors": 0, "resource_count": 0}
failed, skipped, parse_errors = [], [], []
for run in runs:
    for key in summary:
        summary[key] += int(run.get("summary", {}).get(key, 0))
    results = run.get("results", {})
    failed += results.get("failed_checks", [])
    skipped += results.get("skipped_checks", [])
    parse_errors += results.get("parsing_errors", [])
if summary["parsing_errors"] or parse_errors:
    problems.append(f"checkov parsing errors: {summary['parsing_errors']} {parse_errors}")
if summary["resource_count"] == 0:
    problems.append("checkov found 0 resources")
for check in failed:
    problems.append(f"FAILED {check['check_id']} {check['resource']} ({check['file_path']}:"
                    f"{check['file_line_range'][0]}): {check['check_name']}")
for check in skipped:
    reason = (check.get("check_result") or {}).get("suppress_comment", "")
    if not reason or reason == "No comment provided" or len(reason.strip()) < 15:
        problems.append(f"skip of {check['check_id']} on {check['resource']} has no justification")

# 4. Parameters file only sets declared parameters (checkov does not read .bicepparam).
main = (infra_dir / "main.bicep").read_text()
declared = set(re.findall(r"^param\s+(\w+)\s", main, re.M))
param_file = infra_dir / "main.bicepparam"
if param_file.exists():
    text = param_file.read_text()
    if not re.search(r"^using\s+'main\.bicep'", text, re.M):
        problems.append("main.bicepparam does not say: using 'main.bicep'")
    for name in re.findall(r"^param\s+(\w+)\s*=", text, re.M):
        if name not in declared:
            problems.append(f"main.bicepparam sets undeclared parameter {name}")
else:
    problems.append("infra/main.bicepparam is missing")

# 5. docs/deploy.md documents every parameter of main.bicep (its parameter table).
doc = infra_dir.parent / "docs" / "deploy.md"
if doc.exists():
    documented = set(re.findall(r"^\|\s*`(\w+)`\s*\|", doc.read_text(), re.M))
    missing = sorted(declared - documented)
    if missing:
        problems.append(f"docs/deploy.md parameter table misses: {', '.join(missing)}")
else:
    problems.append("docs/deploy.md is missing")

# 6. The blocks the Rust drift test reads are present and well-formed.
def block(text, marker):
    m = re.search(rf"// BEGIN {re.escape(marker)}\b.*?\n(.*?)// END {re.escape(marker)}\b", text, re.S)
    return m.group(1) if m else None
fa = (infra_dir / "modules" / "function_app.bicep").read_text()
names = []
for marker in ("app-settings:platform", "app-settings:responder"):
    body = block(fa, marker)
    if body is None:
        problems.append(f"function_app.bicep: block '{marker}' missing")
        continue
    names += re.findall(r"name:\s*'([A-Za-z0-9_]+)'", body)
dupes = sorted({n for n in names if names.count(n) > 1})
if dupes:
    problems.append(f"duplicate app setting names: {dupes}")
sb = (infra_dir / "modules" / "service_bus.bicep").read_text()
qbody = block(sb, "queue-names")
queues = re.findall(r"^\s*'([a-z0-9-]+)'\s*$", qbody or "", re.M)
if queues != ["notification", "isolation", "rotation"]:
    problems.append(f"service_bus.bicep queue-names block is {queues}, expected notification, isolation, rotation")

elapsed = time.time() - started
resources_by_pycep = sum(len(t.get("resources", {})) for t in parsed.values())
print("check-infra summary")
print(f"  files parsed      {len(parsed)}/{len(bicep_files)} .bicep "
      f"({', '.join(str(p.relative_to(infra_dir)) for p in bicep_files)})")
print(f"  resources         {summary['resource_count']} (checkov), {resources_by_pycep} declared (pycep)")
print(f"  checks            passed {summary['passed']}, failed {summary['failed']}, "
      f"skipped {summary['skipped']}, parsing errors {summary['parsing_errors']}")
for check in skipped:
    reason = (check.get("check_result") or {}).get("suppress_comment", "")
    print(f"  skipped {check['check_id']:<13} {check['resource']}: {reason[:90]}")
print(f"  app settings      {len(names)} names in function_app.bicep; queues {queues}")
print(f"  wall time         {elapsed:.1f}s")
if problems:
    print("check-infra: FAILED", file=sys.stderr)
    for p in problems:
        print(f"  - {p}", file=sys.stderr)
    sys.exit(1)
print("check-infra: OK")
PY
