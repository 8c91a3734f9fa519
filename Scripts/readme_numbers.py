#!/usr/bin/env python3
"""The README's numbers, generated: every number in README.md sits in a block written by this
script from the JSON files in docs/results/, which the scripts that measured them wrote.

  readme_numbers.py tests SWIFT_LOG PYTEST_LOG SECONDS FRESH   JSON of one test run (Scripts/test.sh)
  readme_numbers.py record [--note TEXT] FILE...
                                       copy measured runs into docs/results/ (main-job-first.json,
                                       main-job-warm.json, tests-first.json, tests-warm.json by
                                       what the file says it measured), with TEXT (e.g. what else
                                       the machine was doing) rendered next to them
  readme_numbers.py render [--check]   rewrite README.md's generated blocks; --check exits 1 when
                                       they differ from what docs/results/ says

A block is `<!-- generated: NAME -->` … `<!-- end generated -->`; the text outside blocks holds no
measured number.
"""
import datetime
import json
import os
import platform
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "docs", "results")
README = os.path.join(ROOT, "README.md")


def machine():
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{os.cpu_count()}-core {cpu}"


def tests_json(swift_log, pytest_log, seconds, fresh):
    swift = open(swift_log, encoding="utf-8", errors="replace").read()
    py = open(pytest_log, encoding="utf-8", errors="replace").read()
    m = re.search(r"Test run with (\d+) tests? in (\d+) suites? passed", swift)
    p = re.search(r"(\d+) passed", py)
    if not m or not p:
        sys.exit(f"error: {swift_log if not m else pytest_log}: no passing summary line found")
    return {"kind": "tests", "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
            "machine": machine(), "fresh": fresh == "1", "seconds": int(seconds),
            "swift_tests": int(m.group(1)), "swift_suites": int(m.group(2)), "pytest_passed": int(p.group(1))}


def record(paths, note=None):
    os.makedirs(RESULTS, exist_ok=True)
    for p in paths:
        j = json.load(open(p))
        if note:
            j["note"] = note
        kind = j.get("kind", "main-job")
        fresh = j.get("fresh", j.get("fresh_venv"))
        name = f"{kind}-{'first' if fresh else 'warm'}.json"
        with open(os.path.join(RESULTS, name), "w") as f:
            json.dump(j, f, indent=1)
            f.write("\n")
        print(f"{p} -> docs/results/{name}")


def minutes(s):
    return f"{s / 60:.1f} min" if s >= 60 else f"{s} s"


def load(name):
    path = os.path.join(RESULTS, name)
    return json.load(open(path)) if os.path.exists(path) else None


def note(j):
    return f"; {j['note']}" if j.get("note") else ""


def block_times():
    first, warm = load("main-job-first.json"), load("main-job-warm.json")
    tf, tw = load("tests-first.json"), load("tests-warm.json")
    lines = []
    if first:
        st = first["steps"]
        setup = st.get("deps", 0) + st.get("model", 0)
        lines.append(f"* **Main job, first run** on a fresh clone with an empty pip cache ({first['machine']}, "
                     f"{first['date']}): **{minutes(first['total_seconds'])}** — set-up before the build "
                     f"{minutes(setup)} (system packages {minutes(st.get('deps', 0))}"
                     f"{' — they were installed already' if st.get('deps', 0) < 5 else ''}, default model "
                     f"{minutes(st.get('model', 0))}), build {minutes(st.get('build', 0))}, convert "
                     f"{minutes(st.get('convert', 0))}, llama.cpp check {minutes(st.get('gguf', 0))} "
                     f"(including the wait for its binding's compile){note(first)}.")
    if warm:
        lines.append(f"* **Main job, again** ({warm['date']}): **{minutes(warm['total_seconds'])}** "
                     f"(convert {minutes(warm['steps'].get('convert', 0))}){note(warm)}.")
    for t, what in ((tf, "first run in a clean clone (a new venv with torch, transformers, mlx and llama.cpp's binding; the whole build)"),
                    (tw, "warm")):
        if t:
            lines.append(f"* **Tests, {what}** ({t['machine']}, {t['date']}): **{minutes(t['seconds'])}**, "
                         f"{t['swift_tests']} Swift tests in {t['swift_suites']} suites + {t['pytest_passed']} Python tests{note(t)}.")
    if not lines:
        lines.append("* (no measured run recorded yet: run the commands, then `python3 Scripts/readme_numbers.py record "
                     ".cache/main-job/timing.json .cache/test-timing.json && python3 Scripts/readme_numbers.py render`)")
    return "\n".join(lines)


def block_main_result():
    j = load("main-job-warm.json") or load("main-job-first.json")
    if not j:
        return "(no measured run recorded yet)"
    p = j["perplexity"]
    return (f"It ends by printing the perplexities (WikiText-2, 40 × 512): FP32 {p['fp32']:.3f}, FireQ W4A8KV4 "
            f"{p['fireq']:.3f} (KL {p['kl_mean']:.3f} nats/token; {j['date']}, {j['machine']}).")


BLOCKS = {"times": block_times, "main-result": block_main_result}


def render(check):
    text = open(README, encoding="utf-8").read()
    pat = re.compile(r"(<!-- generated: ([a-z-]+) -->\n)(.*?)(<!-- end generated -->)", re.S)

    def sub(m):
        name = m.group(2)
        if name not in BLOCKS:
            sys.exit(f"error: {README}: unknown generated block '{name}'")
        return m.group(1) + BLOCKS[name]() + "\n" + m.group(4)

    new = pat.sub(sub, text)
    if check:
        if new != text:
            sys.exit(f"error: {README}: generated blocks are stale; run python3 Scripts/readme_numbers.py render")
        return
    tmp = README + ".tmp"
    open(tmp, "w", encoding="utf-8").write(new)
    os.replace(tmp, README)


def main(argv):
    if len(argv) >= 1 and argv[0] == "tests" and len(argv) == 5:
        print(json.dumps(tests_json(*argv[1:]), indent=1))
    elif len(argv) >= 4 and argv[0] == "record" and argv[1] == "--note":
        record(argv[3:], argv[2])
    elif len(argv) >= 2 and argv[0] == "record":
        record(argv[1:])
    elif argv and argv[0] == "render":
        render("--check" in argv[1:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
