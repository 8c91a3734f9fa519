import Foundation

/// `fireq calibrate-slurm`: calibration spread over a Slurm cluster (issue #29) — an array job of P
/// tasks, task I running `fireq calibrate … --part I/P`, and a merge job that starts when every
/// task succeeded (`--dependency=afterok`) and runs `fireq calibrate-merge`. The merged file
/// equals one `fireq calibrate` over all the windows, byte for byte (Formats/calibration-stats.md).
public enum CalibrationSlurm {
    /// The submit script (bash: two `sbatch` calls, each given its job script on stdin). Paths are
    /// absolute. The parts and logs go to OUT.parts/; a failed task can be rerun alone
    /// (`sbatch --array=I` of the printed array script) before merging by hand.
    public static func script(
        model: String, job: CalibrationJob, parts: Int, out: String, executable: String,
        options o: SlurmOptions
    ) throws -> String {
        try job.validate()
        guard parts >= 1 else { throw PipelineError("--parts must be at least 1.") }
        guard parts <= job.samples else {
            throw PipelineError(
                "--parts \(parts) of \(job.samples) windows would leave a part empty; use at most \(job.samples) parts."
            )
        }
        let outPath = canonicalPath(parentFolder(out)) + "/" + (out as NSString).lastPathComponent
        let partsDir = outPath + ".parts"
        guard !partsDir.contains(" ") else {
            throw PipelineError("\(partsDir): Slurm's --output cannot name a path with spaces; choose another --out.")
        }
        do {
            try FileManager.default.createDirectory(atPath: partsDir + "/logs", withIntermediateDirectories: true)
        } catch {
            throw PipelineError("\(partsDir)/logs: cannot create the log folder (\(error.localizedDescription)).")
        }
        let q = SlurmScript.quote
        var cal = ["calibrate", "--model", canonicalPath(model)]
        if let t = job.text { cal += ["--text", canonicalPath(t)] }
        if let t = job.jsonl { cal += ["--jsonl", canonicalPath(t)] }
        if let t = job.tokens { cal += ["--tokens", canonicalPath(t)] }
        if job.generate { cal += ["--generate", "--temperature", "\(job.temperature)", "--top-p", "\(job.topP)"] }
        cal += ["--samples", String(job.samples), "--seq-len", String(job.seqLen), "--seed", String(job.seed)]
        if job.shuffle { cal.append("--shuffle") }
        func directives(_ name: String, cpus: Int) -> String {
            var s = "#SBATCH --job-name=\(name)\n#SBATCH --ntasks=1\n#SBATCH --cpus-per-task=\(cpus)\n"
            if let p = o.partition { s += "#SBATCH --partition=\(p)\n" }
            if let t = o.time { s += "#SBATCH --time=\(t)\n" }
            if let m = o.mem { s += "#SBATCH --mem=\(m)\n" }
            return s
        }
        let exe = q(executable)
        return """
            #!/bin/bash
            # Written by fireq \(FireQVersion.string) calibrate-slurm: \(job.samples) windows of \(job.seqLen) tokens of
            # \(canonicalPath(model)) in \(parts) parts, merged into \(outPath). Submit with: bash THIS_FILE
            set -euo pipefail
            ARRAY=$(sbatch --parsable <<'FIREQ_PARTS'
            #!/bin/bash
            \(directives(o.jobName, cpus: o.cpusPerTask))#SBATCH --array=1-\(parts)%\(o.maxParallel)
            #SBATCH --output=\(partsDir)/logs/part-%a.log
            set -u
            exec \(exe) \(cal.map(q).joined(separator: " ")) \\
              --part "$SLURM_ARRAY_TASK_ID/\(parts)" --out \(q(partsDir))/part-"$SLURM_ARRAY_TASK_ID".h5 --force \\
              --threads "${SLURM_CPUS_PER_TASK:-\(o.cpusPerTask)}"
            FIREQ_PARTS
            )
            MERGE=$(sbatch --parsable --dependency=afterok:"$ARRAY" <<'FIREQ_MERGE'
            #!/bin/bash
            \(directives(o.jobName + "-merge", cpus: 1))#SBATCH --output=\(partsDir)/logs/merge.log
            set -u
            exec \(exe) calibrate-merge --model \(q(canonicalPath(model))) --out \(q(outPath)) --force \\
              \((1...parts).map { q(partsDir + "/part-\($0).h5") }.joined(separator: " "))
            FIREQ_MERGE
            )
            echo "calibration array job $ARRAY (\(parts) parts), merge job $MERGE -> \(outPath)"

            """
    }
}
