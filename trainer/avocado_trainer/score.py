"""Next-token log-probabilities of a trained model: `python3 -m avocado_trainer.score --model DIR --input in.json`.

Input: {"sequences": [[ids...], ...]}. Output (stdout, JSON): {"logprobs": [[...vocab...], ...]},
the full log-softmax of the next token after each sequence. Used by the export parity test.
"""
import argparse
import json
import sys

import torch

from .hf import load_hf_checkpoint


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--input", required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, _ = load_hf_checkpoint(args.model)
    model.eval()
    with open(args.input, "r", encoding="utf-8") as handle:
        sequences = json.load(handle)["sequences"]
    out = []
    with torch.no_grad():
        for ids in sequences:
            logits = model(torch.tensor([ids], dtype=torch.long))[0, -1].double()
            out.append(torch.log_softmax(logits, dim=-1).tolist())
    json.dump({"logprobs": out}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
