import Evaluation
import Foundation
import JSONSupport
import LlamaReference
import ModelDescription
import PackedFormat
import Runtime

/// Where a packed model's perplexity loss comes from, measured on the smoke evaluation's own
/// windows by running the same packed folder three times, with more of the recipe's numerics each
/// time: the weights alone (`--numerics weights-only`), plus FP8 activations (`weights-fp8act`),
/// plus the rest (`fireq`: FP8 re-rounding of ŵ, FP8 Q, INT4 K/V and their options). The three
/// steps add up to the whole loss; the largest one names the recipe option to try (issue #25:
/// "the message says which component lost most and which recipe option to try").
public struct LossDiagnosis: Sendable, Equatable {
    public enum Component: String, Sendable { case weights, activations, attention }
    /// Perplexity rise in percent of the baseline's, per step.
    public var weightsPercent: Double, activationsPercent: Double, attentionPercent: Double
    public var largest: Component
    /// One recipe change to try for the largest component (recipe JSON, with why).
    public var advice: String

    /// Runs the two partial numerics on `tokens` (windows of `context`, at most `windows`, protocol
    /// all, as the smoke evaluation) and splits the loss `fullPPL` / `basePPL`. One model in memory
    /// at a time.
    public static func run(
        packedDir: String, tokens: [Int32], context: Int, windows: Int, basePPL: Double, fullPPL: Double,
        threads: Int
    ) throws -> LossDiagnosis {
        func ppl(_ n: RuntimeNumerics) throws -> Double {
            let m = try QuantizedModel(directory: packedDir, threads: threads, numerics: n)
            return try Perplexity.evaluate(
                model: m, tokens: tokens, context: context, maxWindows: windows, protocol: .all
            ).perplexity
        }
        let w = try ppl(.weightsOnly), a = try ppl(.weightsFP8Activations)
        let pm = try PackedModel(directory: packedDir)
        let config = try ModelConfig(directory: packedDir)
        return diagnose(
            base: basePPL, weightsOnly: w, fp8Activations: a, full: fullPPL, recipe: pm.recipe,
            hasBias: config.attentionBias)
    }

    /// The split and the advice from the four perplexities (no model is run).
    public static func diagnose(
        base: Double, weightsOnly w: Double, fp8Activations a: Double, full f: Double,
        recipe r: JSONValue, hasBias: Bool
    ) -> LossDiagnosis {
        let steps: [(Component, Double)] = [
            (.weights, (w / base - 1) * 100), (.activations, (a - w) / base * 100), (.attention, (f - a) / base * 100)
        ]
        let largest = steps.max { $0.1 < $1.1 }!.0
        let advice: String
        switch largest {
        case .attention:
            if hasBias && r["attention"]?["kv_center"]?.stringValue != "bias" {
                advice = #""attention": {"kv_center": "bias"} (this model's k/v biases set the INT4 K/V scales)"#
            } else if r["attention"]?["kv_group_size"]?.intValue == nil {
                advice =
                    #""attention": {"kv_group_size": 16, "kv_scale_search": true} (one INT4 scale per 16 channels)"#
            } else if r["attention"]?["kv_scale_search"]?.boolValue == true
                && r["attention"]?["kv_signed_scales"]?.boolValue != true
            {
                advice = #""attention": {"kv_signed_scales": true} (K/V scales of either sign)"#
            } else {
                advice = #""attention": {"kv_bits": null} (K/V in full precision: W4A8 instead of W4A8KV4)"#
            }
        case .weights:
            let gu = r["smoothing"]?["gate_up_c"]?.doubleValue ?? 0, dn = r["smoothing"]?["down_c"]?.doubleValue ?? 0
            if gu > 0 || dn > 0 {
                advice =
                    #""smoothing": {"gate_up_c": 0, "down_c": 0} (the weight-statistics channel scales can move a model's weights off the grid they quantize well on)"#
            } else if r["weights"]?["scale_search"]?.boolValue != true {
                advice = #""weights": {"scale_search": true} (input-weighted group scales)"#
            } else if r["weights"]?["signed_scales"]?.boolValue != true {
                advice =
                    #""weights": {"signed_scales": true} (negative group scales: code −8 for either sign of a group's extreme)"#
            } else if (r["weights"]?["scale_search_floor"]?.doubleValue ?? 0.5) < 0.9 {
                advice =
                    #""weights": {"scale_search_floor": 0.9} (the search clips a group's extreme by at most 10 %)"#
            } else {
                advice = #""weights": {"group_size": 32} or a smaller group (more scales per row)"#
            }
        case .activations:
            advice = #""activations": {"format": "fp32"} (FP8 per-token activations are what lost most)"#
        }
        return LossDiagnosis(
            weightsPercent: steps[0].1, activationsPercent: steps[1].1, attentionPercent: steps[2].1,
            largest: largest, advice: advice)
    }

    /// "of the loss, the weights alone cost +a %, FP8 activations +b %, FP8 Q / INT4 K/V (and
    /// FP8 re-rounding) +c %; the largest, …, may improve with …".
    public var sentence: String {
        func p(_ x: Double) -> String { String(format: "%@%.1f %%", x >= 0 ? "+" : "", x) }
        let what: String
        switch largest {
        case .weights: what = "the INT4 weights"
        case .activations: what = "the FP8 activations"
        case .attention: what = "FP8 Q / INT4 K/V"
        }
        return
            "of the loss, the INT4 weights alone cost \(p(weightsPercent)), FP8 activations \(p(activationsPercent)), "
            + "FP8 Q / INT4 K/V (with FP8 re-rounding) \(p(attentionPercent)); the largest is \(what): try the recipe option \(advice)"
    }
}
