"""The code's shape rules of issue #28, checked on the sources (no build needed):

* Package.swift's target dependencies equal what each module's sources import
  (Scripts/check_imports.py): no undeclared import, no declared-but-unused dependency — and the
  checker does catch both (a sabotaged copy of the package fails it).
* No Hugging Face tensor-name literal outside Sources/ModelDescription: every engine asks
  `TensorNames` (the calibration file's dataset names such as "o_proj" and recipe keys such as
  "lm_head" are this tool's own names, not tensor names, and are not matched by the patterns).
* Every Swift source is as `swift format` with `.swift-format` leaves it.
"""
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
CHECK = os.path.join(ROOT, "Scripts", "check_imports.py")


def run_check(root):
    return subprocess.run([sys.executable, CHECK, root], capture_output=True, text=True)


def test_package_dependencies_equal_imports():
    r = run_check(ROOT)
    assert r.returncode == 0, r.stdout


def test_checker_catches_undeclared_and_unused(tmp_path):
    shutil.copytree(os.path.join(ROOT, "Sources"), tmp_path / "Sources")
    shutil.copytree(os.path.join(ROOT, "Tests"), tmp_path / "Tests", ignore=shutil.ignore_patterns("__pycache__"))
    pkg = open(os.path.join(ROOT, "Package.swift")).read()
    sabotaged = pkg.replace('.target(name: "Evaluation", dependencies: ["LlamaReference", "Kernels", "CFireQKernels"])',
                            '.target(name: "Evaluation", dependencies: ["LlamaReference", "CFireQKernels", "Tokenizer"])')
    assert sabotaged != pkg, "the Evaluation target line changed; update this test"
    (tmp_path / "Package.swift").write_text(sabotaged)
    r = run_check(str(tmp_path))
    assert r.returncode == 1
    assert r.stdout.splitlines() == [
        "Evaluation: imports Kernels but does not declare it in Package.swift",
        "Evaluation: declares Tokenizer in Package.swift but no source imports it",
    ]


HF_NAME = re.compile(r'"[^"\n]*(model\.layers\.|self_attn\.|mlp\.(gate|up|down)_proj|_layernorm|embed_tokens|'
                     r'lm_head\.weight|model\.norm\.)[^"\n]*"')


def test_no_tensor_name_literal_outside_model_description():
    hits = []
    src = os.path.join(ROOT, "Sources")
    for dirpath, _, files in os.walk(src):
        if os.path.relpath(dirpath, src).split(os.sep)[0] == "ModelDescription":
            continue
        for f in files:
            if f.endswith(".swift"):
                path = os.path.join(dirpath, f)
                for n, line in enumerate(open(path), 1):
                    if HF_NAME.search(line) and not line.lstrip().startswith("///") and not line.lstrip().startswith("//"):
                        hits.append(f"{os.path.relpath(path, ROOT)}:{n}: {line.strip()}")
    assert hits == []
    # The pattern does match the names where they are spelled.
    names = open(os.path.join(src, "ModelDescription", "TensorNames.swift")).read()
    assert len(HF_NAME.findall(names)) >= 8


def swift_sources():
    out = []
    for top in ("Sources", "Tests", "Plugins", os.path.join("Fuzz", "Sources")):
        for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
            out += sorted(os.path.join(dirpath, f) for f in files if f.endswith(".swift"))
    return sorted(out)


def test_sources_follow_the_formatter_configuration():
    """`.swift-format` (4 spaces, lines ≤ 120 where the language allows) was applied once to every
    Swift source; new code follows it: formatting the tree changes nothing. Fix a failure with
    `swift format --in-place --recursive Sources Tests Plugins Fuzz/Sources`."""
    swift = shutil.which("swift")
    assert swift, "swift is not on the PATH (the formatter is `swift format`)"
    files = swift_sources()
    cfg = os.path.join(ROOT, ".swift-format")
    r = subprocess.run([swift, "format", "--configuration", cfg, *files], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    if r.stdout != "".join(open(f, encoding="utf-8").read() for f in files):
        bad = [os.path.relpath(f, ROOT) for f in files
               if subprocess.run([swift, "format", "--configuration", cfg, f], capture_output=True, text=True).stdout
               != open(f, encoding="utf-8").read()]
        assert not bad, f"not formatted: {bad}"
