import CFireQKernels

/// Scalar codecs for the formats the toolkit stores (FIREQ-METHOD.md §1).
public enum FP16 {
    @inlinable public static func encode(_ x: Float) -> UInt16 {
        UInt16(truncatingIfNeeded: SmallFloatFormat.float16.encode(x, overflow: .ieee))
    }
    @inlinable public static func decode(_ h: UInt16) -> Float { SmallFloatFormat.float16.decode(UInt32(h)) }
}

public enum BF16 {
    /// Round-to-nearest-even to bfloat16; NaN stays NaN (quieted), overflow goes to ±Inf.
    @inlinable public static func encode(_ x: Float) -> UInt16 {
        let b = x.bitPattern
        if (b & 0x7FFF_FFFF) > 0x7F80_0000 { return UInt16(truncatingIfNeeded: (b >> 16) | 0x40) }
        let rounded = b &+ 0x7FFF &+ ((b >> 16) & 1)
        return UInt16(truncatingIfNeeded: rounded >> 16)
    }
    @inlinable public static func decode(_ h: UInt16) -> Float { Float(bitPattern: UInt32(h) << 16) }
    /// Rounds a Float32 to the nearest bfloat16 value, returned as Float32.
    @inlinable public static func round(_ x: Float) -> Float { decode(encode(x)) }
}

public enum FP8E4M3 {
    /// Largest finite magnitude, 448.
    public static let max: Float = 448
    /// Smallest positive (subnormal) magnitude, 2^-9.
    public static let minSubnormal: Float = 0x1p-9
    /// Encodes with round-to-nearest-even; `saturating` clamps overflow and ±Inf to ±448,
    /// otherwise they become NaN (the format has no infinity).
    @inlinable public static func encode(_ x: Float, saturating: Bool = true) -> UInt8 {
        UInt8(truncatingIfNeeded: SmallFloatFormat.float8E4M3FN.encode(x, overflow: saturating ? .saturate : .ieee))
    }
    @inlinable public static func decode(_ c: UInt8) -> Float { decodeTable[Int(c)] }
    /// Rounds to the nearest E4M3 value (saturating), returned as Float32.
    @inlinable public static func round(_ x: Float) -> Float { decode(encode(x)) }
    public static let decodeTable: [Float] = (0..<256).map { SmallFloatFormat.float8E4M3FN.decode(UInt32($0)) }

    /// INT4 group scales a searched rounding tries for a group with absmax `a` (Formats/recipe-schema.md
    /// `weights.scale_search`, runtime-numerics "K/V scale search"): the E4M3 values from the first
    /// one ≥ a/7 (at most 448) down to the last one ≥ max(floor·a/7, 2^-9), largest first (floor 0.5:
    /// a/14; `weights.scale_search_floor`); [2^-9] when a/7 ≤ 2^-9. The first is always included.
    public static func int4ScaleCandidates(absmax a: Float, floor ratio: Float = 0.5) -> [Float] {
        let top = a / 7
        guard top > minSubnormal else { return [minSubnormal] }
        var code = Int(encode(top))  // positive codes ascend with their values (1 … 126)
        if decode(UInt8(code)) < top && code < 126 { code += 1 }
        let floor = Swift.max(top * ratio, minSubnormal)
        var out: [Float] = []
        while code >= 1 && decode(UInt8(code)) >= floor { out.append(decode(UInt8(code))); code -= 1 }
        // Beyond the format (a/14 > 448) the only candidate is 448 (code 127 would be NaN).
        return out.isEmpty ? [decode(UInt8(Swift.min(code + 1, 126)))] : out
    }
}

public enum FP8E5M2 {
    public static let max: Float = 57344
    @inlinable public static func encode(_ x: Float, saturating: Bool = false) -> UInt8 {
        UInt8(truncatingIfNeeded: SmallFloatFormat.float8E5M2.encode(x, overflow: saturating ? .saturate : .ieee))
    }
    @inlinable public static func decode(_ c: UInt8) -> Float { decodeTable[Int(c)] }
    public static let decodeTable: [Float] = (0..<256).map { SmallFloatFormat.float8E5M2.decode(UInt32($0)) }
}

/// Bulk widening of stored 16-bit tensors to Float32 (SIMD where the CPU has it; exact).
public enum Widen {
    public static func f16(_ src: UnsafePointer<UInt16>, _ dst: UnsafeMutablePointer<Float>, count: Int) {
        fq_f16_to_f32(src, dst, count)
    }
    public static func bf16(_ src: UnsafePointer<UInt16>, _ dst: UnsafeMutablePointer<Float>, count: Int) {
        fq_bf16_to_f32(src, dst, count)
    }
}
