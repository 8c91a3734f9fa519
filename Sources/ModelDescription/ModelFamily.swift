/// What one model family has, beyond the sizes in its config.json (issue #28): one value per
/// family, each in its own file under Families/. The config parser, the reference forward pass,
/// the quantizer, the runtime and the exports ask it instead of testing the architecture.
public struct ModelFamily: Sendable, Equatable {
    /// Where the q/k/v projections' biases come from.
    public enum Bias: Sendable, Equatable {
        /// Every checkpoint of the family has them (Qwen2).
        case always
        /// The config's boolean key says (Llama's `attention_bias`), default false.
        case configKey(String)
    }

    /// How a config.json turns on sliding-window attention, which the engines do not run yet: a
    /// config that does is refused by this key's name.
    public enum SlidingWindowSwitch: Sendable, Equatable {
        /// The key holds the window and sliding windows are on unless it is null (Mistral).
        case windowUnlessNull(String)
        /// A boolean key turns them on (Qwen2 / Qwen3's `use_sliding_window`).
        case flag(String)
    }

    /// The Hugging Face class name in `architectures`.
    public let architecture: ModelConfig.Architecture
    /// The q/k/v biases.
    public let qkvBias: Bias
    /// Per-head RMSNorm of q and k between the projection and RoPE (`q_norm`, `k_norm`).
    public let qkNorm: Bool
    /// The config key that would turn on sliding-window attention (nil: the family has none).
    public let slidingWindow: SlidingWindowSwitch?
    /// llama.cpp's architecture name for `fireq export --format gguf` (nil: no GGUF export yet).
    public let ggufArchitecture: String?
    /// llama.cpp's converter reorders each q/k head's rows for this architecture (its kernels
    /// rotate interleaved pairs where Hugging Face rotates halves); false for NEOX-layout families.
    public let ggufPermutesQK: Bool
    /// The GGUF architecture has q/k/v bias tensors (`blk.N.attn_q.bias`, …; F32).
    public var ggufCarriesQKVBias: Bool { qkvBias == .always }

    public init(architecture: ModelConfig.Architecture, qkvBias: Bias, qkNorm: Bool, slidingWindow: SlidingWindowSwitch?,
                ggufArchitecture: String?, ggufPermutesQK: Bool) {
        self.architecture = architecture
        self.qkvBias = qkvBias
        self.qkNorm = qkNorm
        self.slidingWindow = slidingWindow
        self.ggufArchitecture = ggufArchitecture
        self.ggufPermutesQK = ggufPermutesQK
    }

    /// Every family this tool runs, in the order error messages list them.
    public static let all: [ModelFamily] = [.llama, .mistral, .qwen2, .qwen3]

    /// The family of an architecture.
    public static func of(_ a: ModelConfig.Architecture) -> ModelFamily {
        all.first { $0.architecture == a }!
    }
}
