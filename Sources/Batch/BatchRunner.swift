import Exports
import Foundation
import JSONSupport
import PackedFormat
import Pipelines
import TensorStore

/// The status record of one entry (`MANIFEST.fireq-batch/status/INDEX.json`).
public struct BatchStatus: Sendable {
    public var status: String
    public var exitStatus: Int?
    public var message: String?
    public var attempt: Int
    public var host: String
    public var pid: Int
    public var slurmJob: String?
    public var started: String
    public var finished: String?
    public var seconds: Double?
    public var stages: [StageTiming] = []
    public var report: String?
    public var packedSHA256: String?
    public var entrySHA256: String

    func json(_ e: BatchEntry) -> JSONValue {
        var o: [(String, JSONValue)] = [
            ("index", .int(e.index)), ("line", .int(e.line)), ("id", .string(e.id)), ("out", .string(e.job.out)),
            ("entry_sha256", .string(entrySHA256)), ("status", .string(status))
        ]
        if let exitStatus { o.append(("exit_status", .int(exitStatus))) }
        if let message { o.append(("message", .string(message))) }
        o += [("attempt", .int(attempt)), ("host", .string(host)), ("pid", .int(pid))]
        if let slurmJob { o.append(("slurm_job", .string(slurmJob))) }
        o.append(("started", .string(started)))
        if let finished { o.append(("finished", .string(finished))) }
        if let seconds { o.append(("seconds", .double(seconds))) }
        if !stages.isEmpty {
            o.append(("stages", StageTiming.jsonValue(stages)))
        }
        if let report { o.append(("report", .string(report))) }
        if let packedSHA256 { o.append(("packed_sha256", .string(packedSHA256))) }
        return .object(JSONObject(o))
    }

    init(status: String, attempt: Int, entrySHA256: String) {
        self.status = status
        self.attempt = attempt
        self.entrySHA256 = entrySHA256
        host = hostName()
        pid = Int(getpid())
        started = isoNow()
        let env = ProcessInfo.processInfo.environment
        if let a = env["SLURM_ARRAY_JOB_ID"], let t = env["SLURM_ARRAY_TASK_ID"] {
            slurmJob = a + "_" + t
        } else {
            slurmJob = env["SLURM_JOB_ID"]
        }
    }

    /// Reads a status record; nil when there is none or it cannot be read.
    public static func read(_ path: String) -> BatchStatus? {
        guard let d = FileBytes.readIfPresent(path, limit: FileBytes.smallJSONLimit), let j = try? JSONParser.parse(d),
            let st = j["status"]?.stringValue, let sha = j["entry_sha256"]?.stringValue
        else { return nil }
        var s = BatchStatus(status: st, attempt: j["attempt"]?.intValue ?? 0, entrySHA256: sha)
        s.exitStatus = j["exit_status"]?.intValue
        s.message = j["message"]?.stringValue
        s.host = j["host"]?.stringValue ?? "?"
        s.pid = j["pid"]?.intValue ?? 0
        s.slurmJob = j["slurm_job"]?.stringValue
        s.started = j["started"]?.stringValue ?? "?"
        s.finished = j["finished"]?.stringValue
        s.seconds = j["seconds"]?.doubleValue
        s.stages = (j["stages"]?.objectValue?.pairs ?? []).map {
            StageTiming(
                name: $0.key, seconds: $0.value["seconds"]?.doubleValue ?? 0,
                skipped: $0.value["skipped"]?.boolValue ?? false)
        }
        s.report = j["report"]?.stringValue
        s.packedSHA256 = j["packed_sha256"]?.stringValue
        return s
    }

    /// `running` whose process is gone from this host reads as `interrupted`.
    public var effectiveStatus: String {
        guard status == "running", host == hostName() else { return status }
        if kill(pid_t(pid), 0) != 0 && errno == ESRCH { return "interrupted" }
        let cmd = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? ""
        return cmd.contains("run-one") ? "running" : "interrupted"
    }
}

public enum BatchRunner {
    static func write(_ s: BatchStatus, _ e: BatchEntry, _ m: BatchManifest) throws {
        try FileManager.default.createDirectory(atPath: m.stateFolder + "/status", withIntermediateDirectories: true)
        try writeAtomically(JSONWriter.pretty(s.json(e)) + "\n", to: m.statusPath(e.index))
    }

    /// Runs entry `index` in this process as `fireq convert` would, recording its status; returns
    /// the exit status (0 passed or up to date, 3 threshold failed, 1 error).
    public static func runOne(
        _ m: BatchManifest, index: Int, threads: Int, expectSHA256: String? = nil,
        log: any ProgressReporter, onExport: (ExportSummaryLine) -> Void = { _ in }
    ) -> Int32 {
        let prefix = "\(m.path): entry \(index)"
        if let expectSHA256, expectSHA256 != m.sha256 {
            log.line(
                "error: \(m.path): the manifest changed since the job was written (sha256 \(m.sha256.prefix(12))…, expected \(expectSHA256.prefix(12))…); write the job again with fireq batch slurm."
            )
            return 1
        }
        guard index >= 0 && index < m.entryCountIncludingInvalid else {
            log.line(
                "error: \(prefix): there is no such entry (the manifest has \(m.entryCountIncludingInvalid), numbered from 0)."
            )
            return 1
        }
        guard let e = m.entries.first(where: { $0.index == index }) else {
            for p in m.problems where p.hasPrefix("\(m.path):\(m.entryLines[index]): ") { log.line("error: " + p) }
            log.line("error: \(prefix): the entry is not valid (fireq batch check \(m.path)).")
            return 1
        }
        let bad = m.problems.filter { $0.hasPrefix("\(m.path):\(e.line): ") } + m.fileProblems(e)
        if !bad.isEmpty {
            for p in bad { log.line("error: " + p) }
            return 1
        }
        let previous = BatchStatus.read(m.statusPath(index))
        var s = BatchStatus(status: "running", attempt: (previous?.attempt ?? 0) + 1, entrySHA256: e.sha256)
        log.line(
            "== fireq batch: entry \(index) (line \(e.line), \(e.id)), attempt \(s.attempt), on \(s.host), pid \(s.pid)\(s.slurmJob.map { ", Slurm job " + $0 } ?? ""), \(s.started)"
        )
        let t0 = Date()
        func finish(_ status: String, _ code: Int32, _ message: String?) -> Int32 {
            s.status = status
            s.exitStatus = Int(code)
            s.message = message
            s.finished = isoNow()
            s.seconds = Date().timeIntervalSince(t0)
            do { try write(s, e, m) } catch {
                log.line("error: \(m.statusPath(index)): cannot write the status record (\(error)).")
            }
            log.line("== entry \(index): \(status)\(message.map { ": " + $0 } ?? "")")
            return code
        }

        // Done already: OUT published by this same entry, bytes unchanged.
        if let p = previous, p.status == "passed", p.entrySHA256 == e.sha256, let h = p.packedSHA256,
            (try? PackedModel.contentSHA256(directory: e.job.out, names: PackedModel.weightFileNames(in: e.job.out)))
                == h
        {
            log.line("\(e.job.out): up to date (this entry passed before and its model is unchanged), skipped")
            return 0
        }
        do { try write(s, e, m) } catch {
            log.line("error: \(m.statusPath(index)): cannot write the status record (\(error)).")
            return 1
        }
        do {
            try FileManager.default.createDirectory(atPath: parentFolder(e.job.out), withIntermediateDirectories: true)
        } catch {
            return finish(
                "failed", 1,
                "\(parentFolder(e.job.out)): cannot create the output's folder (\(error.localizedDescription)).")
        }
        var job = e.job
        job.threads = threads
        do {
            let o = try ConvertPipeline.run(job, log: log, name: SettingNames.manifestKey) {
                onExport(ExportSummaryLine($0))
            }
            s.stages = o.stages
            s.report = o.reportJSON
            if let f = o.failure { return finish("failed-threshold", 3, f) }
            s.packedSHA256 = o.packedSHA256
            return finish("passed", 0, nil)
        } catch {
            return finish("failed", 1, String(describing: error))
        }
    }

    /// What one finished child run reports to the caller of `runAll`.
    public struct Finished: Sendable {
        public var entry: BatchEntry
        public var exitStatus: Int32
        public var signal: Int32?
        public var status: BatchStatus?
        /// The entry was done already: its status record did not change.
        public var upToDate: Bool
    }

    /// Runs every entry as a child `EXECUTABLE batch run-one` process, `jobs` at a time, each with
    /// `threads` threads and its output appended to its log; keeps going past failures. Returns 0
    /// when every entry passed, 3 when every failure is a threshold failure, 1 otherwise.
    public static func runAll(
        _ m: BatchManifest, executable: String, jobs: Int, threads: Int,
        onFinish: @escaping @Sendable (Finished) -> Void
    ) throws -> Int32 {
        let fm = FileManager.default
        try fm.createDirectory(atPath: m.stateFolder + "/logs", withIntermediateDirectories: true)
        let sem = DispatchSemaphore(value: jobs), group = DispatchGroup()
        let lock = NSLock()
        nonisolated(unsafe) var worst: Int32 = 0
        for e in m.entries {
            sem.wait()
            let before = BatchStatus.read(m.statusPath(e.index))
            let logPath = m.logPath(e.index)
            if !fm.fileExists(atPath: logPath) { _ = fm.createFile(atPath: logPath, contents: nil) }
            guard let log = FileHandle(forWritingAtPath: logPath) else {
                sem.signal()
                throw PipelineError("\(logPath): cannot open the entry's log for writing.")
            }
            log.seekToEndOfFile()
            let p = Process()
            p.executableURL = URL(fileURLWithPath: executable)
            p.arguments = [
                "batch", "run-one", m.path, "--index", String(e.index), "--threads", String(threads),
                "--manifest-sha256", m.sha256
            ]
            p.standardOutput = log
            p.standardError = log
            p.standardInput = FileHandle.nullDevice
            group.enter()
            p.terminationHandler = { p in
                try? log.close()
                let after = BatchStatus.read(m.statusPath(e.index))
                var f = Finished(
                    entry: e, exitStatus: p.terminationStatus, signal: nil, status: after,
                    upToDate: p.terminationStatus == 0 && after != nil && before?.started == after?.started
                        && before?.attempt == after?.attempt)
                if p.terminationReason == .uncaughtSignal {
                    f.signal = p.terminationStatus
                    f.exitStatus = 1
                    // The child could not record its end: do it for it.
                    if var s = f.status, s.status == "running" {
                        s.status = "failed"
                        s.exitStatus = 1
                        s.message = "the run-one process was killed by signal \(p.terminationStatus)"
                        s.finished = isoNow()
                        try? write(s, e, m)
                        f.status = s
                    }
                }
                let code: Int32 = f.exitStatus == 0 ? 0 : (f.exitStatus == 3 ? 3 : 1)
                lock.lock()
                if code == 1 || (code == 3 && worst == 0) { worst = code }
                lock.unlock()
                onFinish(f)
                sem.signal()
                group.leave()
            }
            do { try p.run() } catch {
                try? log.close()
                group.leave()
                sem.signal()
                throw PipelineError("\(executable): cannot start a run-one process (\(error.localizedDescription)).")
            }
        }
        group.wait()
        lock.lock()
        defer { lock.unlock() }
        return m.entries.count == m.entryCountIncludingInvalid ? worst : 1
    }
}
