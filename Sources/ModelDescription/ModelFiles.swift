/// The files of a Hugging Face model folder besides config.json and the weights that a runtime
/// needs to serve it (tokenizer, special tokens, chat template, generation defaults): the packed
/// folder keeps them and every folder export carries them, so `mlx_lm.generate` and a
/// transformers `pipeline` run an export with nothing else (issue #26).
public enum ModelFiles {
    public static let serving = [
        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
        "chat_template.jinja", "chat_template.json", "tokenizer.model"
    ]
}
