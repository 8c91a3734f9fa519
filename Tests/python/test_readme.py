"""The README is a quickstart (issue #27): at most 150 lines, every measured number in a block
that Scripts/readme_numbers.py generates from docs/results/, every link to a file of the repo
resolving, and the generated blocks current."""
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README = os.path.join(ROOT, "README.md")
SCRIPT = os.path.join(ROOT, "Scripts", "readme_numbers.py")


def text():
    return open(README, encoding="utf-8").read()


def test_readme_is_short():
    n = text().count("\n")
    assert n <= 150, f"README.md has {n} lines; move detail to docs/"


def test_generated_blocks_are_current():
    r = subprocess.run([sys.executable, SCRIPT, "render", "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_no_measured_number_outside_generated_blocks():
    # Outside the generated blocks, no duration, rate, size of memory or perplexity-like decimal.
    outside = re.sub(r"<!-- generated: [a-z-]+ -->.*?<!-- end generated -->", "", text(), flags=re.S)
    pat = re.compile(r"\b\d+(\.\d+)?\s*(min|minutes|s|seconds|h|hours|tokens/s|MiB|GiB|GB|MB)\b|\b\d+\.\d{3}\b")
    hits = [m.group(0) for m in pat.finditer(outside)]
    assert not hits, f"numbers typed by hand in README.md: {hits}"


def test_links_resolve():
    for target in re.findall(r"\]\(([^)#]+)\)", text()):
        if "://" in target:
            continue
        assert os.path.exists(os.path.join(ROOT, target)), f"README.md links to missing {target}"


def test_tests_json_parses_real_summaries(tmp_path):
    swift = tmp_path / "swift.log"
    swift.write_text("✔ Test run with 173 tests in 31 suites passed after 512.3 seconds.\n")
    py = tmp_path / "pytest.log"
    py.write_text("........\n53 passed, 1 warning in 80.12s (0:01:20)\n")
    r = subprocess.run([sys.executable, SCRIPT, "tests", str(swift), str(py), "600", "1"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert (j["swift_tests"], j["swift_suites"], j["pytest_passed"], j["seconds"], j["fresh"]) == (173, 31, 53, 600, True)
    swift.write_text("✘ Test run with 173 tests in 31 suites failed after 512.3 seconds with 1 issue.\n")
    r = subprocess.run([sys.executable, SCRIPT, "tests", str(swift), str(py), "600", "1"], capture_output=True, text=True)
    assert r.returncode != 0 and str(swift) in r.stderr
