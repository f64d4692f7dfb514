"""Checks an exported model against the Hugging Face stack and the trainer on torch 2.x / CUDA.

Run where torch 2.x and transformers are installed (e.g. a GPU node):
  python3 tools/hf-compat-check.py EXPORTED_HF_FOLDER EXPECTED.json SHARDS_FOLDER
EXPECTED.json: {"texts": [...], "ids": [[...]], "promptIds": [[...]]} computed by Avocado's TypeScript side.
Prints one JSON report line per check.
"""
import json
import os
import subprocess
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "trainer"))
from avocado_trainer.hf import load_hf_checkpoint  # noqa: E402


def report(check, **fields):
    print(json.dumps({"check": check, **fields}), flush=True)


def main():
    folder, expected_path, shards = sys.argv[1:4]
    expected = json.load(open(expected_path, encoding="utf-8"))
    report("versions", torch=torch.__version__, cuda=torch.cuda.is_available(), device=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)

    ours, _ = load_hf_checkpoint(folder)
    ours.eval()
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        import transformers
    except ImportError as error:
        report("transformers", ok=False, error=str(error))
        return
    hf = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32)
    hf.eval()
    worst = 0.0
    with torch.no_grad():
        for ids in expected["promptIds"]:
            x = torch.tensor([ids])
            worst = max(worst, float((ours(x) - hf(x).logits).abs().max()))
    report("transformers Qwen3ForCausalLM logits vs avocado model.py", ok=worst < 1e-4, maxAbsDiff=worst, transformers=transformers.__version__)

    tokenizer = AutoTokenizer.from_pretrained(folder)
    mismatches = [t for t, ids in zip(expected["texts"], expected["ids"]) if tokenizer.encode(t, add_special_tokens=False) != ids]
    report("transformers tokenizer vs avocado ids", ok=not mismatches, checked=len(expected["texts"]), mismatches=mismatches[:3])

    for device, steps in (("cpu", 20), ("cuda", 300)):
        if device == "cuda" and not torch.cuda.is_available():
            continue
        out = f"/tmp/avocado-train-{device}"
        job = {
            "shards": shards, "out": out, "device": device, "seed": 7, "threads": 4,
            "architecture": {"layers": 2, "hidden": 128, "heads": 4, "kvHeads": 2, "headDim": 32, "ffn": 384, "context": 256},
            "optimization": {"steps": steps, "batchSize": 32, "learningRate": 0.003, "warmupSteps": 10, "checkpointEvery": 100},
        }
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "job.json"), "w", encoding="utf-8") as handle:
            json.dump(job, handle)
        started = time.time()
        result = subprocess.run([sys.executable, "-m", "avocado_trainer.train", "--job", os.path.join(out, "job.json")],
                                capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.path.join(ROOT, "trainer")})
        events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        steps_seen = [e for e in events if e["event"] == "step"]
        report(f"trainer on torch {torch.__version__} / {device}", ok=result.returncode == 0, exit=result.returncode,
               firstLoss=steps_seen[0]["loss"] if steps_seen else None, lastLoss=steps_seen[-1]["loss"] if steps_seen else None,
               tokensPerSecond=steps_seen[-1]["tokensPerSecond"] if steps_seen else None, seconds=time.time() - started,
               error=result.stderr[-800:] if result.returncode else None)


if __name__ == "__main__":
    main()
