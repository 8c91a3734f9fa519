import Foundation
import Pipelines

/// `fireq batch slurm`: an sbatch array job, one task per manifest entry.
public enum BatchSlurm {
    static let quote = SlurmScript.quote

    /// The sbatch script. Paths are absolute, so it can be submitted from any folder. Creates the
    /// log folder (Slurm does not create the folder of --output).
    public static func script(_ m: BatchManifest, executable: String, options o: SlurmOptions) throws -> String {
        do {
            try FileManager.default.createDirectory(atPath: m.stateFolder + "/logs", withIntermediateDirectories: true)
        } catch {
            throw PipelineError("\(m.stateFolder)/logs: cannot create the log folder (\(error.localizedDescription)).")
        }
        let manifest = canonicalPath(m.path)
        let state = canonicalPath(parentFolder(m.stateFolder)) + "/" + (m.stateFolder as NSString).lastPathComponent
        let n = m.entryCountIncludingInvalid
        var s = """
            #!/bin/bash
            # Written by fireq \(FireQVersion.string) batch slurm for \(manifest)
            # (\(n) entries, manifest sha256 \(m.sha256)). Submit with: sbatch THIS_FILE
            # Rerun one entry: sbatch --array=INDEX THIS_FILE. A cancelled, preempted or requeued task
            # resumes its conversion (finished stages are skipped). Summary: fireq batch report MANIFEST --out BASE

            """
        s += "#SBATCH --job-name=\(o.jobName)\n"
        s += "#SBATCH --array=0-\(n - 1)%\(o.maxParallel)\n"
        s += "#SBATCH --cpus-per-task=\(o.cpusPerTask)\n"
        s += "#SBATCH --ntasks=1\n"
        if let p = o.partition { s += "#SBATCH --partition=\(p)\n" }
        if let t = o.time { s += "#SBATCH --time=\(t)\n" }
        if let mem = o.mem { s += "#SBATCH --mem=\(mem)\n" }
        s += "#SBATCH --requeue\n"
        s += "#SBATCH --open-mode=append\n"
        s += "#SBATCH --output=\(state)/logs/%a.log\n"
        s += """
            set -u
            exec \(quote(executable)) batch run-one \(quote(manifest)) --index "$SLURM_ARRAY_TASK_ID" \\
              --threads "${SLURM_CPUS_PER_TASK:-\(o.cpusPerTask)}" --manifest-sha256 \(m.sha256)

            """
        return s
    }
}
