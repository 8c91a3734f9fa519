import Foundation
import JSONSupport
import PackedFormat
import Pipelines
import TensorStore
import Testing

/// Streaming, sharded packed output (Formats/fireq-packed-v1.md "Shards"): the same
/// quantization cut at 30 MB is three shards and an index holding exactly the single file's tensor
/// bytes; the runtime, inspect and the exports read it and give the same digits and bytes.
@Suite(.serialized) struct ShardTests {
    @Test func shardedOutputEqualsTheSingleFile() throws {
        try TestPaths.requireModel()
        let d = TestPaths.tempDir()
        let stats = try QuantizeTests.stats()
        let recipe = QuantizeTests.recipes + "/fireq.json"
        let single = try QuantizeTests.quantize(recipe, out: d + "/single", stats: stats)
        #expect(single.status == 0, "\(single.stderr)")
        let r = try CLI.run([
            "quantize", "--model", TestPaths.model, "--stats", stats, "--recipe", recipe, "--out", d + "/sharded",
            "--threads", "2", "--max-shard-size", "30MB"
        ])
        #expect(r.status == 0, "\(r.stderr)")

        // The single file is exactly what SafetensorsWriter lays out for its tensors (sorted).
        let one = try SafetensorsFile(path: d + "/single/model.safetensors")
        let rewritten = d + "/rewritten.safetensors"
        try SafetensorsWriter.write(
            one.tensors.map {
                TensorData(name: $0.name, dtype: $0.dtype, shape: $0.shape, bytes: [UInt8](one.rawBytes($0)))
            },
            metadata: one.metadata.filter { $0.key != "format" }, to: rewritten)
        #expect(TestPaths.read(rewritten) == TestPaths.read(d + "/single/model.safetensors"))

        // Three shards: the 56 MB embedding alone, then layers; no layer split across shards.
        let files = try FileManager.default.contentsOfDirectory(atPath: d + "/sharded").filter { $0.hasPrefix("model") }
            .sorted()
        #expect(
            files == [
                "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                "model-00003-of-00003.safetensors",
                "model.safetensors.index.json"
            ])
        let index = try JSONParser.parse(TestPaths.read(d + "/sharded/model.safetensors.index.json"))
        let map = try #require(index["weight_map"]?.objectValue)
        let first = try SafetensorsFile(path: d + "/sharded/model-00001-of-00003.safetensors")
        #expect(first.tensorNames == ["model.embed_tokens.weight"])
        for l in 0..<30 {
            let shardsOfLayer = Set(
                map.pairs.filter { $0.key.hasPrefix("model.layers.\(l).") }.compactMap { $0.value.stringValue })
            #expect(shardsOfLayer.count == 1, "layer \(l) is in \(shardsOfLayer)")
        }
        for f in files.dropLast() {
            let size = try #require(
                try FileManager.default.attributesOfItem(atPath: d + "/sharded/" + f)[.size] as? Int)
            #expect(f == files[0] || size <= 30_000_000, "\(f): \(size) bytes")
        }
        let a = try PackedModel(directory: d + "/single"), b = try PackedModel(directory: d + "/sharded")
        #expect(b.sharded && !a.sharded)
        #expect(a.file.tensorNames == b.file.tensorNames && a.crc == b.crc)
        #expect(index["metadata"]?["total_size"]?.intValue == a.file.tensors.reduce(0) { $0 + $1.byteCount })
        for t in a.file.tensors {
            #expect(Array(a.file.rawBytes(t)) == Array(b.file.rawBytes(b.file.info(t.name)!)), "\(t.name)")
        }
        try b.verify()
        // Identity: index then shards, one "NAME SHA256" line each.
        var lines = ""
        for f in ["model.safetensors.index.json"] + files.dropLast() {
            lines += "\(f) \(try SHA256.fileHex(d + "/sharded/" + f))\n"
        }
        #expect(try b.contentSHA256() == SHA256.hex(Array(lines.utf8)))
        #expect(try a.contentSHA256() == (try SHA256.fileHex(d + "/single/model.safetensors")))

        // The runtime gives the same digits; the compressed-tensors export the same bytes.
        func ppl(_ m: String) throws -> String {
            let e = try CLI.run([
                "eval", "--model", m, "--text", ConvertTests.wiki, "--context", "128", "--windows", "2", "--json"
            ])
            #expect(e.status == 0, "\(e.stderr)")
            return e.stdout.components(separatedBy: ",").first { $0.contains("\"perplexity\"") } ?? "none"
        }
        #expect(try ppl(d + "/single") == (try ppl(d + "/sharded")))
        for (m, o) in [("single", "a.ct"), ("sharded", "b.ct")] {
            #expect(
                try CLI.run(["export", d + "/" + m, "--format", "compressed-tensors", "--out", d + "/" + o]).status == 0
            )
        }
        #expect(TestPaths.read(d + "/a.ct/model.safetensors") == TestPaths.read(d + "/b.ct/model.safetensors"))
        let info = try JSONParser.parse(TestPaths.read(d + "/b.ct/fireq-export.json"))
        #expect(info["packed_sha256"]?.stringValue == (try b.contentSHA256()))

        // A folder with both layouts is refused (which one is stale cannot be told).
        try FileManager.default.copyItem(
            atPath: d + "/single/model.safetensors", toPath: d + "/sharded/model.safetensors")
        let both = try CLI.run(["inspect", d + "/sharded"])
        #expect(
            both.status != 0 && both.stderr.contains("holds both model.safetensors and model.safetensors.index.json"),
            "\(both.stderr)")
        try FileManager.default.removeItem(atPath: d + "/sharded/model.safetensors")
        // A damaged shard is named by inspect --verify.
        let victim = d + "/sharded/model-00002-of-00003.safetensors"
        var bytes = TestPaths.read(victim)
        bytes[bytes.count - 10] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: victim))
        let v = try CLI.run(["inspect", d + "/sharded", "--verify"])
        #expect(v.status != 0 && v.stderr.contains(victim) && v.stderr.contains("crc32 mismatch"), "\(v.stderr)")
        // A shard the index does not account for is refused.
        try FileManager.default.removeItem(atPath: d + "/sharded/model-00003-of-00003.safetensors")
        let gone = try CLI.run(["inspect", d + "/sharded"])
        #expect(gone.status != 0 && gone.stderr.contains("model-00003-of-00003.safetensors"), "\(gone.stderr)")
    }

    @Test func shardSizeIsChecked() throws {
        try TestPaths.requireModel()
        let r = try CLI.run([
            "quantize", "--model", TestPaths.model, "--stats", "x.h5", "--recipe", "r.json", "--out", "o",
            "--max-shard-size", "1KB"
        ])
        #expect(
            r.status != 0 && r.stderr.contains("--max-shard-size '1KB' is not a size of at least 1 MiB"), "\(r.stderr)")
        #expect(
            parseByteSize("5GB") == 5_000_000_000 && parseByteSize("2GiB") == 2 << 30
                && parseByteSize("500mb") == 500_000_000
                && parseByteSize("123") == 123 && parseByteSize("x") == nil && parseByteSize("-1GB") == nil)
    }
}
