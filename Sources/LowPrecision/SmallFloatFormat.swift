/// A binary floating-point format narrower than Float32, described by its bit layout
/// (FP16 and the FP8 formats; bfloat16 has its own codec in `BF16`).
///
/// Encoding rounds a Float32 to nearest, ties to even, directly from its bits (one rounding,
/// so the result is the correctly rounded value, as PyPI `ml_dtypes` computes it).
public struct SmallFloatFormat: Sendable, Equatable {
    /// What an encoder does with a finite value beyond the largest finite code, and with ±Inf.
    public enum Overflow: Sendable, Equatable {
        /// Return ±max finite (the FireQ convention for FP8 scales and activations).
        case saturate
        /// Return the format's overflow value: ±Inf where it has one, NaN otherwise (E4M3FN).
        case ieee
    }

    public let name: String
    public let exponentBits: Int
    public let mantissaBits: Int
    public let bias: Int
    /// Largest finite code (without sign bit).
    public let maxFiniteCode: UInt32
    /// Code (without sign) of +Inf, or nil when the format has none.
    public let infinityCode: UInt32?
    /// Canonical quiet NaN code (without sign).
    public let nanCode: UInt32

    public var totalBits: Int { 1 + exponentBits + mantissaBits }

    /// IEEE binary16.
    public static let float16 = SmallFloatFormat(
        name: "float16", exponentBits: 5, mantissaBits: 10, bias: 15,
        maxFiniteCode: 0x7BFF, infinityCode: 0x7C00, nanCode: 0x7E00)
    /// FP8 E4M3 "fn": no infinity, NaN = S.1111.111, max 448, subnormals to 2^-9.
    public static let float8E4M3FN = SmallFloatFormat(
        name: "float8_e4m3fn", exponentBits: 4, mantissaBits: 3, bias: 7,
        maxFiniteCode: 0x7E, infinityCode: nil, nanCode: 0x7F)
    /// FP8 E5M2 (IEEE-like: ±Inf, NaNs, max 57344).
    public static let float8E5M2 = SmallFloatFormat(
        name: "float8_e5m2", exponentBits: 5, mantissaBits: 2, bias: 15,
        maxFiniteCode: 0x7B, infinityCode: 0x7C, nanCode: 0x7E)

    @usableFromInline var signShift: UInt32 { UInt32(exponentBits + mantissaBits) }

    /// Encodes `x` to this format's code (in the low `totalBits` bits).
    @inlinable
    public func encode(_ x: Float, overflow: Overflow) -> UInt32 {
        let bits = x.bitPattern
        let sign = (bits >> 31) << signShift
        let absBits = bits & 0x7FFF_FFFF
        if absBits > 0x7F80_0000 { return sign | nanCode }  // NaN keeps its sign
        if absBits == 0x7F80_0000 { return sign | overflowCode(overflow) }  // ±Inf
        let m = UInt32(mantissaBits)
        let eminNormal = 1 - bias  // exponent of the smallest normal
        let biasedE = Int(absBits >> 23)  // Float32 biased exponent
        var code: UInt32
        if biasedE - 127 < eminNormal {
            // Subnormal range of the target (or zero): count quanta of 2^(emin - m).
            // The code of a subnormal equals its quantum count, and a count of 2^m is exactly
            // the smallest normal's code, so rounding up across the boundary needs no care.
            let a = Float(bitPattern: absBits)
            let quanta = (a * Float(sign: .plus, exponent: mantissaBits - eminNormal, significand: 1))
                .rounded(.toNearestOrEven)
            code = UInt32(quanta)
        } else {
            let shift = 23 - m
            let full = (absBits & 0x7F_FFFF) | 0x80_0000
            var r = full >> shift
            let rem = full & ((1 << shift) - 1)
            let half: UInt32 = 1 << (shift - 1)
            if rem > half || (rem == half && (r & 1) == 1) { r += 1 }
            var e = biasedE - 127 + bias
            if r == (1 << (m + 1)) { r >>= 1; e += 1 }
            // Exponents past the format's range: report overflow below.
            if e >= (1 << exponentBits) { return sign | overflowCode(overflow) }
            code = (UInt32(e) << m) | (r & ((1 << m) - 1))
        }
        if code > maxFiniteCode { return sign | overflowCode(overflow) }
        return sign | code
    }

    @usableFromInline
    func overflowCode(_ overflow: Overflow) -> UInt32 {
        switch overflow {
        case .saturate: return maxFiniteCode
        case .ieee: return infinityCode ?? nanCode
        }
    }

    /// Decodes a code (low `totalBits` bits) to Float32 (exact: every value of these formats is a Float32).
    @inlinable
    public func decode(_ code: UInt32) -> Float {
        let m = UInt32(mantissaBits)
        let negative = (code >> signShift) & 1 == 1
        let mag = code & ((1 << signShift) - 1)
        let e = Int(mag >> m)
        let f = mag & ((1 << m) - 1)
        let v: Float
        if let inf = infinityCode, mag >= inf {
            v = mag == inf ? .infinity : .nan
        } else if infinityCode == nil && mag > maxFiniteCode {
            v = .nan
        } else if e == 0 {
            v = Float(f) * Float(sign: .plus, exponent: 1 - bias - mantissaBits, significand: 1)
        } else {
            v = Float(sign: .plus, exponent: e - bias, significand: 1 + Float(f) / Float(1 << m))
        }
        return negative ? -v : v
    }
}
