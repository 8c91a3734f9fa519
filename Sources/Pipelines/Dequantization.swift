import Foundation
import PackedFormat
import Runtime
import TensorStore

/// `fireq inspect --dequantize-to`: every linear's dequantized FP32 weight ŵ·(1/P), exactly as
/// the INT4-FP8 runtime holds it (its packed ŵ panels times each row's 1/P, exact: a power of
/// two), written to one safetensors file under the linears' names.
public enum Dequantization {
    public static func write(_ m: PackedModel, to path: String) throws {
        var ts: [TensorData] = []
        for name in m.linearNames {
            let lin = try Int4FP8Linear(try m.linear(name), fp8Rerounding: m.fp8Rerounding)
            var w = lin.weightValues()
            for r in 0..<lin.n { for c in 0..<lin.k { w[r * lin.k + c] *= lin.columnScale[r] } }
            ts.append(TensorData(name: name, float32: w, shape: [lin.n, lin.k]))
        }
        try SafetensorsWriter.write(ts, to: path)
    }
}
