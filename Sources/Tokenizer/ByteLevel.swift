/// GPT-2's reversible map between bytes and printable Unicode scalars (HF `ByteLevel`):
/// printable Latin-1 bytes map to themselves, the other 68 bytes to U+0100... in order.
enum ByteLevel {
    static let byteToScalar: [Unicode.Scalar] = {
        var printable = Set<Int>()
        for r in [0x21...0x7E, 0xA1...0xAC, 0xAE...0xFF] { for b in r { printable.insert(b) } }
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var n = 0
        for b in 0..<256 {
            if printable.contains(b) {
                table[b] = Unicode.Scalar(UInt32(b))!
            } else {
                table[b] = Unicode.Scalar(UInt32(256 + n))!
                n += 1
            }
        }
        return table
    }()

    static let scalarToByte: [UInt32: UInt8] = {
        var d: [UInt32: UInt8] = [:]
        for (b, s) in byteToScalar.enumerated() { d[s.value] = UInt8(b) }
        return d
    }()

    /// Maps a piece's UTF-8 bytes to the byte-level alphabet.
    static func encode(_ s: ArraySlice<Unicode.Scalar>) -> String {
        var out = String.UnicodeScalarView()
        for u in s {
            for b in String(u).utf8 { out.append(byteToScalar[Int(b)]) }
        }
        return String(out)
    }
}
