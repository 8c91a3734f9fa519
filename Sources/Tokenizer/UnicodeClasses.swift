/// Character classes used by the pre-tokenizer patterns, as the Oniguruma/`regex` engines behind
/// HF tokenizers define them: \p{L} = general category L*, \p{N} = Nd|Nl|No, \s = White_Space.
/// ASCII answers come from a table (the common case); others ask Unicode properties.
enum CharClass {
    private static let ascii: [UInt8] = (0..<128).map { i -> UInt8 in
        let s = Unicode.Scalar(UInt8(i))
        var f: UInt8 = 0
        if s.properties.isWhitespace { f |= 1 }
        if (0x41...0x5A).contains(i) || (0x61...0x7A).contains(i) { f |= 2 }
        if (0x30...0x39).contains(i) { f |= 4 }
        return f
    }

    @inline(__always) static func isSpace(_ s: Unicode.Scalar) -> Bool {
        s.value < 128 ? ascii[Int(s.value)] & 1 != 0 : s.properties.isWhitespace
    }
    @inline(__always) static func isLetter(_ s: Unicode.Scalar) -> Bool {
        if s.value < 128 { return ascii[Int(s.value)] & 2 != 0 }
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }
    @inline(__always) static func isNumber(_ s: Unicode.Scalar) -> Bool {
        if s.value < 128 { return ascii[Int(s.value)] & 4 != 0 }
        switch s.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }
}
