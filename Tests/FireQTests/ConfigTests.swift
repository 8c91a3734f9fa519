import Foundation
import JSONSupport
import LlamaReference
import ModelDescription
import Testing

@Suite struct ConfigTests {
    static let base =
        #"{"architectures":["LlamaForCausalLM"],"hidden_size":576,"intermediate_size":1536,"num_hidden_layers":30,"num_attention_heads":9,"num_key_value_heads":3,"rms_norm_eps":1e-05,"rope_theta":100000.0,"vocab_size":49152,"tie_word_embeddings":true,"max_position_embeddings":8192"#

    static func parse(_ extra: String) throws -> ModelConfig {
        try ModelConfig(json: try JSONParser.parse(base + extra + "}"), path: "/m/config.json")
    }

    @Test func defaultModelConfig() throws {
        let c = try Self.parse("")
        #expect(c.headDim == 64 && c.qDim == 576 && c.kvDim == 192 && c.tieWordEmbeddings && !c.attentionBias)
        #expect(c.ropeScaling == .none && c.rmsNormEps == 1e-5)
    }

    /// The one reader behind config.json, recipes and batch manifests: types, ranges, null
    /// policy, nested paths and misspelt-key hints, each with the message a user reads.
    @Test func strictFieldReader() throws {
        func fields(_ json: String, _ nulls: JSONFields.Nulls) throws -> JSONFields {
            try JSONFields(document: try JSONParser.parse(json), nulls: nulls)
        }
        func reason(_ body: () throws -> Any?) -> String {
            do { _ = try body(); return "" } catch { return String(describing: error) }
        }
        let f = try fields(
            #"{"n": 3, "x": 0.25, "s": "abc", "b": true, "z": null, "o": {"k": "v", "m": [1]}}"#, .refused)
        #expect(try f.int("n", in: 1...4) == 3 && f.int("absent") == nil)
        #expect(reason { try f.int("n", in: 4...8) } == "n must be in [4, 8], found 3")
        #expect(reason { try f.int("n", in: 4...Int.max) } == "n must be at least 4, found 3")
        #expect(reason { try f.int("x") } == "x must be an integer, found 0.25")
        #expect(reason { try f.number("s") } == "s must be a number, found \"abc\"")
        #expect(reason { try f.number("x", in: 0.5...1) } == "x must be in [0.5, 1], found 0.25")
        #expect(reason { try f.bool("n") } == "n must be true or false, found 3")
        #expect(reason { try f.choice("s", among: ["a", "b"]) } == "s must be one of a, b, found \"abc\"")
        #expect(reason { try f.string("z") } == "z must be a string, found null")
        #expect(reason { try f.object("o")?.int("k") } == "o.k must be an integer, found \"v\"")
        #expect(reason { try f.object("o")?.checkKeys(["k", "mm"]) } == "o.m is not a known key (allowed here: k, mm)")
        #expect(
            reason { try f.checkKeys(["n", "x", "s", "b", "Z", "o"]) }
                == "z is not a known key (allowed here: n, x, s, b, Z, o; did you mean \"Z\"?)")
        #expect(JSONFields.nearest("seq-len", in: ["samples", "seq_len"]) == "seq_len")
        #expect(JSONFields.nearest("txt", in: ["text"]) == nil)
        // Under `.absent` (Hugging Face configs) null is the default; a present null is still seen.
        let h = try fields(#"{"z": null}"#, .absent)
        #expect(try h.string("z") == nil && h.contains("z") && h.isNull("z") && !h.contains("y"))
        #expect(reason { try fields("[1]", .absent) } == "(top level) must be an object, found an array")
    }

    @Test func unsupportedRopeScaling() {
        #expect {
            _ = try Self.parse(#","rope_scaling":{"rope_type":"yarn","factor":4.0}"#)
        } throws: { e in
            let d = "\(e)"
            return d.contains("/m/config.json") && d.contains("rope_scaling type 'yarn'")
                && d.contains("supported: none, default, linear, llama3")
        }
    }

    @Test func unsupportedArchitectureAndSlidingWindow() {
        #expect(throws: ModelError.self) {
            _ = try ModelConfig(json: try JSONParser.parse(#"{"architectures":["GPTNeoXForCausalLM"]}"#), path: "c")
        }
        #expect {
            _ = try ModelConfig(
                json: try JSONParser.parse(
                    Self.base.replacingOccurrences(of: "LlamaForCausalLM", with: "MistralForCausalLM")
                        + #","sliding_window":4096}"#), path: "c")
        } throws: { e in "\(e)".contains("sliding_window 4096") }
    }

    /// Each family's traits (Sources/ModelDescription/Families) decide what its config means:
    /// Qwen2 always has q/k/v biases, Llama only with `attention_bias`, Qwen3 has q/k norms; the
    /// sliding-window switch each family's config uses is refused by that key's name.
    @Test func familiesDecideWhatTheConfigMeans() throws {
        func parse(_ arch: String, _ extra: String = "") throws -> ModelConfig {
            try ModelConfig(
                json: try JSONParser.parse(
                    Self.base.replacingOccurrences(of: "LlamaForCausalLM", with: arch) + extra + "}"), path: "c")
        }
        #expect(ModelFamily.all.map(\.architecture) == [.llama, .mistral, .qwen2, .qwen3, .gemma3])
        let qwen2 = try parse("Qwen2ForCausalLM", #","attention_bias":false"#)
        #expect(qwen2.family == .qwen2 && qwen2.attentionBias && !qwen2.qkNorm)
        #expect(
            try !parse("LlamaForCausalLM").attentionBias
                && parse("LlamaForCausalLM", #","attention_bias":true"#).attentionBias)
        let qwen3 = try parse("Qwen3ForCausalLM")
        #expect(qwen3.family == .qwen3 && qwen3.qkNorm && !qwen3.attentionBias)
        #expect(try parse("MistralForCausalLM", #","sliding_window":null"#).family.ggufArchitecture == "llama")
        #expect(
            ModelFamily.llama.ggufPermutesQK && !ModelFamily.qwen2.ggufPermutesQK
                && ModelFamily.qwen3.ggufArchitecture == "qwen3" && ModelFamily.gemma3.ggufArchitecture == "gemma3"
                && !ModelFamily.gemma3.ggufPermutesQK)
        for arch in ["Qwen2ForCausalLM", "Qwen3ForCausalLM"] {
            #expect { _ = try parse(arch, #","use_sliding_window":true"#) } throws: { e in
                "\(e)" == "c: unsupported use_sliding_window true (supported: false)."
            }
        }
        // Llama has no sliding-window switch: its config's key means nothing to it.
        #expect(try parse("LlamaForCausalLM", #","sliding_window":4096"#).family == .llama)
    }

    /// Gemma 3's config as Google ships it (transformers 4.x keys: `rope_local_base_freq`,
    /// `_sliding_window_pattern`, no tie key) and as transformers 5.x writes it (`rope_parameters`
    /// per attention type, `layer_types`), and what is refused.
    @Test func gemma3Config() throws {
        let g =
            #"{"architectures":["Gemma3ForCausalLM"],"hidden_size":640,"intermediate_size":2048,"num_hidden_layers":18,"num_attention_heads":4,"num_key_value_heads":1,"head_dim":256,"rms_norm_eps":1e-06,"vocab_size":262144,"max_position_embeddings":32768,"hidden_activation":"gelu_pytorch_tanh","query_pre_attn_scalar":256,"sliding_window":512,"final_logit_softcapping":null,"attn_logit_softcapping":null"#
        func parse(_ extra: String) throws -> ModelConfig {
            try ModelConfig(json: try JSONParser.parse(g + extra + "}"), path: "c")
        }
        let legacy = try parse(
            #","rope_theta":1000000.0,"rope_local_base_freq":10000.0,"_sliding_window_pattern":6,"rope_scaling":null"#)
        #expect(
            legacy.family == .gemma3 && legacy.tieWordEmbeddings && legacy.qkNorm && legacy.sandwichNorms
                && legacy.activation == .geluTanh)
        #expect(
            legacy.normWeightOffset == 1 && legacy.embeddingScale == Float(640.0.squareRoot())
                && legacy.attentionScale == 0.0625)
        #expect(legacy.slidingLayers == (0..<18).map { $0 % 6 != 5 } && legacy.slidingWindow == 512)
        #expect(
            legacy.ropeTheta == 1e6 && legacy.localRopeTheta == 1e4 && legacy.attentionWindow(layer: 0) == 512
                && legacy.attentionWindow(layer: 5) == nil)
        let types = (0..<18).map { $0 == 0 ? "\"full_attention\"" : "\"sliding_attention\"" }.joined(separator: ",")
        let v5 = try parse(
            #","layer_types":[\#(types)],"rope_parameters":{"full_attention":{"rope_type":"default","rope_theta":500000.0},"sliding_attention":{"rope_type":"default","rope_theta":20000.0}}"#
        )
        #expect(
            v5.slidingLayers == (0..<18).map { $0 != 0 } && v5.ropeTheta == 5e5 && v5.localRopeTheta == 2e4
                && v5.ropeScaling == .none)
        // mlx-lm's gemma3_text knows only "every p-th layer global": the MLX export writes p, or refuses.
        #expect(legacy.slidingPattern == 6 && v5.slidingPattern == nil)
        #expect(
            TensorNames.norms(v5).all == [
                "input_layernorm.weight", "pre_feedforward_layernorm.weight",
                "post_attention_layernorm.weight", "post_feedforward_layernorm.weight"
            ])
        #expect(
            TensorNames.norms(try Self.parse("")).all == ["input_layernorm.weight", "post_attention_layernorm.weight"])
        for (extra, message) in [
            (#","layer_types":["full_attention"]"#, "c: 'layer_types' must list one attention type per layer (18)."),
            (
                #","use_bidirectional_attention":true"#,
                "c: unsupported use_bidirectional_attention true (supported: false (causal attention))."
            )
        ] {
            #expect { _ = try parse(extra) } throws: { e in "\(e)" == message }
        }
        let capped =
            #"{"architectures":["Gemma3ForCausalLM"],"hidden_size":640,"intermediate_size":2048,"num_hidden_layers":2,"num_attention_heads":4,"head_dim":256,"vocab_size":10,"query_pre_attn_scalar":256,"sliding_window":512,"final_logit_softcapping":30.0}"#
        #expect { _ = try ModelConfig(json: try JSONParser.parse(capped), path: "c") } throws: { e in
            "\(e)" == "c: unsupported final_logit_softcapping 30.0 (supported: null (no soft-capping))."
        }
        let relu =
            #"{"architectures":["Gemma3ForCausalLM"],"hidden_size":640,"intermediate_size":2048,"num_hidden_layers":2,"num_attention_heads":4,"head_dim":256,"vocab_size":10,"query_pre_attn_scalar":256,"sliding_window":512,"hidden_activation":"relu"}"#
        #expect { _ = try ModelConfig(json: try JSONParser.parse(relu), path: "c") } throws: { e in
            "\(e)" == "c: unsupported hidden_activation 'relu' (supported: gelu_pytorch_tanh)."
        }
    }

    /// JSON keys and tokenizer vocabularies compare by bytes: canonically equivalent spellings
    /// ("য়" U+09DF and "য" + "়") are two keys, as in Gemma 3's vocabulary.
    @Test func canonicallyEquivalentKeysAreDistinct() throws {
        let o = try #require(try JSONParser.parse(#"{"য়":1,"য়":2}"#).objectValue)
        #expect(o.count == 2 && o["\u{9DF}"]?.intValue == 1 && o["\u{9AF}\u{9BC}"]?.intValue == 2)
        #expect("\u{9DF}" == "\u{9AF}\u{9BC}")  // what Swift's String equality says
    }

    /// The tensor-name map: layer prefixes and the packed order of the seven linears.
    @Test func tensorNamesParseAndSpell() {
        #expect(TensorNames.layer(12, TensorNames.q + ".weight") == "model.layers.12.self_attn.q_proj.weight")
        #expect(TensorNames.layerIndex(of: "model.layers.12.mlp.up_proj.weight") == 12)
        #expect(
            TensorNames.layerIndex(of: "model.norm.weight") == nil
                && TensorNames.layerIndex(of: "model.layers.x.a") == nil)
        #expect(
            TensorNames.layerPart(of: "model.layers.3.input_layernorm.weight").map { "\($0.layer) \($0.part)" }
                == "3 input_layernorm.weight")
        #expect(
            TensorNames.linearNames(layer: 0) == [
                "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj",
                "model.layers.0.self_attn.v_proj", "model.layers.0.self_attn.o_proj",
                "model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj", "model.layers.0.mlp.down_proj"
            ])
        #expect(TensorNames.lmHeadModule == "lm_head")
    }

    @Test func missingKeyIsNamed() {
        #expect {
            _ = try ModelConfig(
                json: try JSONParser.parse(#"{"architectures":["LlamaForCausalLM"],"hidden_size":8}"#), path: "c")
        } throws: { e in "\(e)" == "c: 'intermediate_size' is missing." }
    }

    /// llama3 frequency scaling (transformers `_compute_llama3_parameters`), Llama-3.2 values:
    /// high-frequency bands unchanged, low-frequency bands divided by the factor.
    @Test func llama3RopeScaling() throws {
        let c = try ModelConfig(
            json: try JSONParser.parse(
                #"{"architectures":["LlamaForCausalLM"],"hidden_size":2048,"intermediate_size":8192,"num_hidden_layers":16,"num_attention_heads":32,"num_key_value_heads":8,"vocab_size":128256,"rope_theta":500000.0,"head_dim":64,"rope_scaling":{"factor":32.0,"high_freq_factor":4.0,"low_freq_factor":1.0,"original_max_position_embeddings":8192,"rope_type":"llama3"}}"#
            ), path: "c")
        let plain = (0..<32).map { j in 1 / powf(500000, Float(2 * j) / 64) }
        let r = Rope(config: c)
        #expect(r.invFreq[0] == plain[0])  // wavelength 2π < 2048: unchanged
        #expect(abs(r.invFreq[31] - plain[31] / 32) <= 1e-12)  // wavelength > 8192: divided by 32
        // A medium band is interpolated between the two.
        let mid = (0..<32).first { j in
            let w = 2 * Float.pi / plain[j]; return w > 2048 && w < 8192
        }!
        #expect(r.invFreq[mid] < plain[mid] && r.invFreq[mid] > plain[mid] / 32)
    }

    @Test func invalidJSONNamesFileAndOffset() {
        let dir = TestPaths.tempDir()
        _ = FileManager.default.createFile(atPath: dir + "/config.json", contents: Data(#"{"hidden_size": 5,}"#.utf8))
        #expect {
            _ = try ModelConfig(directory: dir)
        } throws: { e in "\(e)".contains(dir + "/config.json: not valid JSON: invalid JSON at byte 18") }
    }

    /// transformers 5.x writes RoPE as one `rope_parameters` object; it is read, not defaulted.
    static let v5 = base.replacingOccurrences(of: #","rope_theta":100000.0"#, with: "")
    static func parseV5(_ extra: String) throws -> ModelConfig {
        try ModelConfig(json: try JSONParser.parse(v5 + extra + "}"), path: "/m/config.json")
    }

    @Test func ropeParametersOfTransformers5() throws {
        let plain = try Self.parseV5(#","rope_parameters":{"rope_type":"default","rope_theta":100000.0}"#)
        #expect(plain.ropeTheta == 100000 && plain.ropeScaling == .none)
        #expect(plain == (try Self.parse("")))
        let l3 = try Self.parseV5(
            #","rope_parameters":{"rope_type":"llama3","rope_theta":500000.0,"factor":32.0,"high_freq_factor":4.0,"low_freq_factor":1.0,"original_max_position_embeddings":8192}"#
        )
        #expect(
            l3.ropeTheta == 500000
                && l3.ropeScaling
                    == .llama3(factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192)
        )
        let lin = try Self.parseV5(#","rope_parameters":{"rope_type":"linear","rope_theta":10000.0,"factor":2.0}"#)
        #expect(lin.ropeTheta == 10000 && lin.ropeScaling == .linear(factor: 2))
    }

    @Test func ropeValuesWeDoNotUnderstandAreRefusedByName() {
        func fails(_ extra: String, _ mentions: String...) {
            #expect {
                _ = try Self.parseV5(extra)
            } throws: { e in
                let d = "\(e)"
                return d.hasPrefix("/m/config.json: ") && mentions.allSatisfy { d.contains($0) }
            }
        }
        fails(
            #","rope_parameters":{"rope_type":"yarn","rope_theta":10000.0,"factor":4.0}"#, "rope_parameters type 'yarn'"
        )
        fails(
            #","rope_parameters":{"rope_type":"default","rope_theta":10000.0,"partial_rotary_factor":0.5}"#,
            "rope_parameters.partial_rotary_factor")
        fails(#","rope_parameters":{"rope_type":"default"}"#, "rope_parameters.rope_theta", "positive number")
        fails(
            #","rope_parameters":{"full_attention":{"rope_type":"default","rope_theta":10000.0}}"#, "per attention type"
        )
        fails(
            #","rope_theta":10000.0,"rope_parameters":{"rope_type":"default","rope_theta":500000.0}"#,
            "contradicts rope_parameters.rope_theta")
        fails(
            #","rope_parameters":{"rope_type":"linear","rope_theta":10000.0,"factor":2.0},"rope_scaling":{"rope_type":"linear","factor":2.0}"#,
            "rope_scaling", "next to rope_parameters")
        #expect {
            _ = try Self.parse(#","rope_scaling":{"rope_type":"linear","factor":2.0,"finetuned":true}"#)
        } throws: { e in "\(e)".contains("rope_scaling.finetuned") }
    }
}
