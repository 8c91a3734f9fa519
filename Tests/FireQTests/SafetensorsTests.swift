import Foundation
import TensorStore
import Testing

/// Safetensors profile (Formats/safetensors-profile.md): round trip and one test per bad input.
@Suite struct SafetensorsTests {
    /// Builds a raw file from a header string and data bytes.
    static func rawFile(header: String, data: [UInt8], declaredLength: UInt64? = nil) -> String {
        let dir = TestPaths.tempDir()
        let path = dir + "/t.safetensors"
        var bytes: [UInt8] = []
        let h = Array(header.utf8)
        withUnsafeBytes(of: (declaredLength ?? UInt64(h.count)).littleEndian) { bytes += $0 }
        bytes += h + data
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return path
    }

    static func expectError(_ path: String, contains: String) {
        do {
            _ = try SafetensorsFile(path: path)
            Issue.record("expected an error containing '\(contains)'")
        } catch {
            #expect(error.description.contains(path), "error should name the file: \(error)")
            #expect(error.description.contains(contains), "\(error.description)")
            #expect(error.description.hasSuffix("."), "one sentence: \(error)")
        }
    }

    @Test func roundTrip() throws {
        let dir = TestPaths.tempDir()
        let path = dir + "/m.safetensors"
        let a = TensorData(name: "b.weight", float32: [1, -2, 3.5, 0], shape: [2, 2])
        let b = TensorData(name: "a.bias", dtype: .f16, shape: [3], bytes: [0, 0x3C, 0, 0xC0, 0xFF, 0x7B])
        let c = TensorData(name: "scales", dtype: .f8e4m3, shape: [1, 3], bytes: [0x7E, 0x01, 0x38])
        try SafetensorsWriter.write([a, b, c], metadata: ["note": "x"], to: path)
        let f = try SafetensorsFile(path: path)
        #expect(f.metadata == ["format": "pt", "note": "x"])
        #expect(f.tensorNames == ["b.weight", "a.bias", "scales"])
        #expect(try f.float32("b.weight") == [1, -2, 3.5, 0])
        #expect(try f.float32("a.bias") == [1, -2, 65504])
        #expect(try f.float32("scales") == [448, 0x1p-9, 1])
        #expect(f.dataOffset % 8 == 0)
        // Deterministic bytes: the same input gives the same file.
        let path2 = dir + "/m2.safetensors"
        try SafetensorsWriter.write([a, b, c], metadata: ["note": "x"], to: path2)
        #expect(TestPaths.read(path) == TestPaths.read(path2))
        // No temporary file is left behind.
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["m.safetensors", "m2.safetensors"])
    }

    @Test func exactHeaderBytes() {
        let t = TensorData(name: "x", dtype: .u8, shape: [1], bytes: [7])
        let h = String(decoding: SafetensorsWriter.header(for: [t], metadata: [:]), as: UTF8.self)
        #expect(h == #"{"__metadata__":{"format":"pt"},"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"# + "    ")  // 8 + 84 + 4 = 96
    }

    @Test func truncatedFile() {
        let dir = TestPaths.tempDir()
        let path = dir + "/short.safetensors"
        _ = FileManager.default.createFile(atPath: path, contents: Data([1, 2, 3]))
        Self.expectError(path, contains: "truncated")
    }

    @Test func headerLengthPastEnd() {
        let path = Self.rawFile(header: "{}", data: [], declaredLength: 4096)
        Self.expectError(path, contains: "runs past the end of the file")
    }

    @Test func dataTruncated() {
        let path = Self.rawFile(header: #"{"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, data: [0, 0, 0, 0])
        Self.expectError(path, contains: "past the end of the data section")
    }

    @Test func overlappingOffsets() {
        let path = Self.rawFile(
            header:
                #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
            data: [UInt8](repeating: 0, count: 12))
        Self.expectError(path, contains: "overlaps tensor 'a'")
    }

    @Test func gapBetweenTensors() {
        let path = Self.rawFile(
            header:
                #"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}}"#,
            data: [UInt8](repeating: 0, count: 6))
        Self.expectError(path, contains: "gap")
    }

    @Test func unknownDType() {
        let path = Self.rawFile(
            header: #"{"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8))
        Self.expectError(path, contains: "unsupported dtype 'F64'")
    }

    @Test func shapeByteCountMismatch() {
        let path = Self.rawFile(
            header: #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8))
        Self.expectError(path, contains: "needs 12 bytes but its data_offsets span 8")
    }

    @Test func invalidHeaderJSON() {
        let path = Self.rawFile(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#, data: [0, 0, 0, 0])
        Self.expectError(path, contains: "not valid JSON")
    }

    @Test func duplicateTensorName() {
        let path = Self.rawFile(
            header:
                #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#,
            data: [0, 0])
        Self.expectError(path, contains: "duplicate key \"a\"")
    }

    @Test func unwritableDestinationLeavesNothing() {
        let t = TensorData(name: "x", dtype: .u8, shape: [1], bytes: [7])
        #expect(throws: TensorStoreError.self) {
            try SafetensorsWriter.write([t], to: "/nonexistent-dir/x.safetensors")
        }
    }

    @Test func shardedCheckpoint() throws {
        let dir = TestPaths.tempDir()
        try SafetensorsWriter.write(
            [TensorData(name: "a", float32: [1, 2], shape: [2])], to: dir + "/model-00001-of-00002.safetensors")
        try SafetensorsWriter.write(
            [TensorData(name: "b", float32: [3], shape: [1])], to: dir + "/model-00002-of-00002.safetensors")
        let index =
            #"{"metadata":{},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}"#
        _ = FileManager.default.createFile(atPath: dir + "/model.safetensors.index.json", contents: Data(index.utf8))
        let c = try Checkpoint(directory: dir)
        #expect(c.tensorNames == ["a", "b"])
        #expect(try c.float32("b", shape: [1]) == [3])
        // An index that points a tensor to the wrong shard is an error.
        let bad = #"{"weight_map":{"a":"model-00002-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}"#
        _ = FileManager.default.createFile(atPath: dir + "/model.safetensors.index.json", contents: Data(bad.utf8))
        #expect(throws: TensorStoreError.self) { _ = try Checkpoint(directory: dir) }
    }
}
