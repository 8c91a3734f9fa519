/// Element types of the safetensors profile (Formats/safetensors-profile.md).
public enum DType: String, Sendable, CaseIterable, Equatable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16"
    case f8e4m3 = "F8_E4M3", f8e5m2 = "F8_E5M2"
    case i8 = "I8", u8 = "U8", i16 = "I16", i32 = "I32", u32 = "U32", i64 = "I64"

    public var byteSize: Int {
        switch self {
        case .f8e4m3, .f8e5m2, .i8, .u8: return 1
        case .f16, .bf16, .i16: return 2
        case .f32, .i32, .u32: return 4
        case .i64: return 8
        }
    }

    public var isFloatingPoint: Bool {
        switch self {
        case .f32, .f16, .bf16, .f8e4m3, .f8e5m2: return true
        default: return false
        }
    }
}
