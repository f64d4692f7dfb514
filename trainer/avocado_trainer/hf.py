"""Hugging Face layout: load a Qwen3 checkpoint folder (a real open checkpoint), save ours."""
import json
import os

from .atomic import write_atomic
from .model import Qwen3Config, Qwen3ForCausalLM
from .safetensors_io import load_file, save_file


def load_hf_checkpoint(folder, context=None):
    config_path = os.path.join(folder, "config.json")
    try:
        with open(config_path, "r", encoding="utf-8") as handle:
            hf_config = json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{config_path}: cannot be read ({error})") from error
    model_type = hf_config.get("model_type")
    if model_type != "qwen3":
        raise ValueError(f"{config_path}: model_type is {model_type!r}; only Qwen3 checkpoints can initialise the student")
    config = Qwen3Config.from_hf(hf_config)
    if context:
        config.max_position_embeddings = max(config.max_position_embeddings, int(context))
    state = {}
    index_path = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index_path):
        with open(index_path, "r", encoding="utf-8") as handle:
            files = sorted(set(json.load(handle)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    for name in files:
        state.update(load_file(os.path.join(folder, name)))
    model = Qwen3ForCausalLM(config)
    model.load_hf_state_dict(state, folder)
    return model, config


def save_hf_checkpoint(model, folder, bos_token_id=None, eos_token_id=None):
    os.makedirs(folder, exist_ok=True)
    save_file(model.hf_state_dict(), os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_hf(bos_token_id=bos_token_id, eos_token_id=eos_token_id)
    write_atomic(os.path.join(folder, "config.json"), lambda handle: handle.write(json.dumps(config, indent=2) + "\n"), mode="w")
