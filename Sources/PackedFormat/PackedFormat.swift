import CZlib
import Foundation
import JSONSupport
import LowPrecision
import TensorStore

/// The `fireq-packed` v1 format (Formats/fireq-packed-v1.md): names, INT4 packing, crc32.
public enum PackedFormat {
    public static let name = "fireq-packed"
    public static let version = "1"

    /// crc32 (zlib polynomial) of a byte buffer, as 8 lowercase hex digits.
    public static func crc32Hex(_ bytes: UnsafeRawBufferPointer) -> String {
        var crc: uLong = CZlib.crc32(0, nil, 0)
        var p = bytes.baseAddress?.assumingMemoryBound(to: Bytef.self)
        var n = bytes.count
        while n > 0, let q = p {
            let chunk = min(n, Int(UInt32.max))
            crc = CZlib.crc32(crc, q, uInt(chunk))
            p = q + chunk
            n -= chunk
        }
        let s = String(crc, radix: 16)
        return String(repeating: "0", count: 8 - s.count) + s
    }

    /// Packs INT4 codes [n, k] (k a multiple of 8) into int32 words [n, k/8], little-endian bytes:
    /// element 8c+i in bits 4i…4i+3 of word c, two's complement.
    public static func packInt4(_ q: [Int8], n: Int, k: Int) -> [UInt8] {
        precondition(k % 8 == 0 && q.count == n * k)
        var out = [UInt8](repeating: 0, count: n * k / 2)
        for r in 0..<n {
            for c in 0..<(k / 8) {
                var word: UInt32 = 0
                for i in 0..<8 {
                    let v = q[r * k + 8 * c + i]
                    precondition(v >= -8 && v <= 7)
                    word |= (UInt32(UInt8(bitPattern: v)) & 0xF) << (4 * UInt32(i))
                }
                let o = (r * (k / 8) + c) * 4
                out[o] = UInt8(word & 0xFF); out[o + 1] = UInt8((word >> 8) & 0xFF)
                out[o + 2] = UInt8((word >> 16) & 0xFF); out[o + 3] = UInt8(word >> 24)
            }
        }
        return out
    }

    /// Inverse of `packInt4`. Byte j of the little-endian words holds code 2j in its low nibble
    /// and code 2j + 1 in its high nibble, so the bytes are read in order (any host).
    public static func unpackInt4(_ bytes: UnsafeRawBufferPointer, n: Int, k: Int) -> [Int8] {
        let count = n * k
        precondition(bytes.count >= count / 2, "unpackInt4: too few bytes")
        return [Int8](unsafeUninitializedCapacity: count) { out, initialized in
            let src = bytes.bindMemory(to: UInt8.self)
            for j in 0..<(count / 2) {
                let v = src[j]
                out[2 * j] = Int8(bitPattern: v << 4) >> 4  // sign-extend the low nibble
                out[2 * j + 1] = Int8(bitPattern: v) >> 4  // and the high one
            }
            initialized = count
        }
    }

}

/// One quantized linear layer as stored.
public struct PackedLinear: Sendable, Equatable {
    public let name: String  // e.g. model.layers.0.mlp.down_proj
    public let n: Int, k: Int, groupSize: Int
    public let q: [Int8]  // [n, k]
    public let scales: [Float]  // [n, k/G], values of the scale format
    public let scaleFormat: String  // "fp8_e4m3" | "bf16"
    public let perTensorScaleInv: Float

    public init(
        name: String, n: Int, k: Int, groupSize: Int, q: [Int8], scales: [Float], scaleFormat: String,
        perTensorScaleInv: Float
    ) {
        self.name = name; self.n = n; self.k = k; self.groupSize = groupSize; self.q = q; self.scales = scales
        self.scaleFormat = scaleFormat; self.perTensorScaleInv = perTensorScaleInv
    }

    public func tensors() -> [TensorData] {
        let scaleTensor =
            scaleFormat == "bf16"
            ? TensorData(name: name + ".weight_scale", values: scales, dtype: .bf16, shape: [n, k / groupSize])
            : TensorData(
                name: name + ".weight_scale", dtype: .f8e4m3, shape: [n, k / groupSize],
                bytes: scales.map { FP8E4M3.encode($0) })
        return [
            TensorData(
                name: name + ".weight", dtype: .i32, shape: [n, k / 8], bytes: PackedFormat.packInt4(q, n: n, k: k)),
            scaleTensor,
            TensorData(name: name + ".per_tensor_scale_inv", values: [perTensorScaleInv], dtype: .bf16, shape: [1])
        ]
    }

    /// The effective weight ŵ·(1/P) [n, k] in Float32 (ŵ re-rounded to E4M3 when `fp8Rerounding`;
    /// ŵ alone when `perTensorScale` is false).
    public func dequantized(fp8Rerounding: Bool, perTensorScale: Bool = true) -> [Float] {
        let groups = k / groupSize
        var out = [Float](repeating: 0, count: n * k)
        // A group has one scale, so its 16 possible values are computed once: (E4M3(q·s) or q·s)·(1/P).
        var table = [Float](repeating: 0, count: 16)
        for r in 0..<n {
            for g in 0..<groups {
                let s = scales[r * groups + g]
                for code in 0..<16 {
                    let v = Float(code - 8) * s
                    table[code] = (fp8Rerounding ? FP8E4M3.round(v) : v) * (perTensorScale ? perTensorScaleInv : 1)
                }
                for c in (g * groupSize)..<((g + 1) * groupSize) { out[r * k + c] = table[Int(q[r * k + c]) + 8] }
            }
        }
        return out
    }
}
