"""Solutions of exercises/tutorial_15.py."""


def gpt2_fields(hf):
    return {"vocab_size": hf.get("vocab_size", 50257), "block_size": hf.get("n_positions", 1024),
            "n_layer": hf.get("n_layer", 12), "n_head": hf.get("n_head", 12),
            "n_embd": hf.get("n_embd", 768),
            "gelu_approximate": "none" if hf.get("activation_function", "gelu_new") == "gelu"
            else "tanh"}


WRONG = {
    "gpt2_fields": [lambda hf: {**gpt2_fields(hf), "block_size": hf.get("n_ctx", 1024)},
                    lambda hf: {**gpt2_fields(hf), "gelu_approximate": "tanh"}],
}
