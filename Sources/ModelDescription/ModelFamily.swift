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
        /// Run: `layer_types` lists "sliding_attention" / "full_attention" per layer (else every
        /// `pattern`-th layer is full, the others sliding) and this key holds the window (Gemma 3).
        /// Sliding layers have their own RoPE base (`localThetaKey`); the defaults are
        /// transformers' when the config states no base.
        case perLayer(
            windowKey: String, pattern: Int, localThetaKey: String, defaultTheta: Double, defaultLocalTheta: Double)
    }

    /// The MLP's activation between gate and up (`hidden_act` / `hidden_activation`).
    public enum Activation: String, Sendable, Equatable {
        /// SwiGLU: silu(gate) · up.
        case silu
        /// GeGLU with the tanh approximation of GELU (`gelu_pytorch_tanh`).
        case geluTanh = "gelu_pytorch_tanh"
    }

    /// The Hugging Face class name in `architectures`.
    public let architecture: ModelConfig.Architecture
    /// The q/k/v biases.
    public let qkvBias: Bias
    /// Per-head RMSNorm of q and k between the projection and RoPE (`q_norm`, `k_norm`).
    public let qkNorm: Bool
    /// The config key that would turn on sliding-window attention (nil: the family has none).
    public let slidingWindow: SlidingWindowSwitch?
    /// The config key naming the activation and the one value accepted.
    public let activationKey: String
    public let activation: Activation
    /// RMSNorm weights are stored as w and scale by (offset + w): 0 for Llama's γ = w, 1 for
    /// Gemma's (1 + w). Every engine holds the scale γ = offset + w in FP32 (what transformers
    /// computes) and converts at the file boundary.
    public let normWeightOffset: Float
    /// Norms on both sides of attention and MLP (Gemma 3): the branch outputs are normed before
    /// the residual add, and the MLP's input norm has its own name.
    public let sandwichNorms: Bool
    /// The embedding rows are multiplied by √hidden (Gemma).
    public let scalesEmbedding: Bool
    /// What a config without `tie_word_embeddings` means (transformers' default for the class).
    public let tiedByDefault: Bool
    /// The config key whose value's −½ power scales q·k (Gemma's `query_pre_attn_scalar`); nil:
    /// 1/√head_dim.
    public let attentionScalarKey: String?
    /// llama.cpp's architecture name for `fireq export --format gguf` (nil: none).
    public let ggufArchitecture: String?
    /// llama.cpp's converter reorders each q/k head's rows for this architecture (its kernels
    /// rotate interleaved pairs where Hugging Face rotates halves); false for NEOX-layout families.
    public let ggufPermutesQK: Bool
    /// The GGUF architecture has q/k/v bias tensors (`blk.N.attn_q.bias`, …; F32).
    public var ggufCarriesQKVBias: Bool { qkvBias == .always }

    public init(
        architecture: ModelConfig.Architecture, qkvBias: Bias, qkNorm: Bool, slidingWindow: SlidingWindowSwitch?,
        activationKey: String = "hidden_act", activation: Activation = .silu, normWeightOffset: Float = 0,
        sandwichNorms: Bool = false, scalesEmbedding: Bool = false, tiedByDefault: Bool = false,
        attentionScalarKey: String? = nil,
        ggufArchitecture: String?, ggufPermutesQK: Bool
    ) {
        self.architecture = architecture
        self.activationKey = activationKey
        self.activation = activation
        self.normWeightOffset = normWeightOffset
        self.sandwichNorms = sandwichNorms
        self.scalesEmbedding = scalesEmbedding
        self.tiedByDefault = tiedByDefault
        self.attentionScalarKey = attentionScalarKey
        self.qkvBias = qkvBias
        self.qkNorm = qkNorm
        self.slidingWindow = slidingWindow
        self.ggufArchitecture = ggufArchitecture
        self.ggufPermutesQK = ggufPermutesQK
    }

    /// Every family this tool runs, in the order error messages list them.
    public static let all: [ModelFamily] = [.llama, .mistral, .qwen2, .qwen3, .gemma3]

    /// The family of an architecture.
    public static func of(_ a: ModelConfig.Architecture) -> ModelFamily {
        all.first { $0.architecture == a }!
    }
}
