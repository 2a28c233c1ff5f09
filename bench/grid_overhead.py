"""What Ray adds per grid point: the same tiny-model sweep points run one after another as plain child processes
(the baseline: what `compare` did before it moved onto Ray) and through `run_grid` on a fresh local Ray instance
(start-up and shut-down included), one point at a time with every core, as `forgetlab sweep` runs by default."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

POINTS = 4


def tiny_model(path: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from forgetlab.model import ensure_bundled_cache

    tok = AutoTokenizer.from_pretrained(ensure_bundled_cache())
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, pad_token_id=2, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def main() -> dict:
    from forgetlab.config import ExecutorConfig, SweepConfig, dump_yaml
    from forgetlab.grid import run_command, run_grid

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = tiny_model(tmp / "tiny")
        cfg = SweepConfig(unlearn={"model": {"name": str(model)}, "general": {"enabled": False}, "train": {"epochs": 1},
                                   "rtt": {"enabled": False}}, axes={"seed": list(range(POINTS))})
        configs = []
        for i, point in enumerate(cfg.points()):
            path = tmp / f"p{i}.yaml"
            path.write_text(dump_yaml(cfg.point_config(point, str(tmp / "runs"), f"p{i}")))
            configs.append(path)

        t0 = time.perf_counter()
        plain = [run_command(["unlearn", "--config", str(c)], log=tmp / f"plain{i}.log") for i, c in enumerate(configs)]
        plain_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        on_ray = run_grid(configs, lambda c: run_command(["unlearn", "--config", str(c)], log=c.with_suffix(".log")),
                          lambda done, status: None, tmp, lambda c: c.stem, command="bench", executor=ExecutorConfig())
        ray_s = time.perf_counter() - t0
    assert all(r["status"] == "complete" for r in plain + on_ray), (plain, on_ray)
    point_s = sum(r["seconds"] for r in plain) / POINTS
    result = {"points": POINTS, "plain_seconds": round(plain_s, 1), "ray_seconds": round(ray_s, 1),
              "point_seconds": round(point_s, 1), "overhead_per_point_s": round((ray_s - plain_s) / POINTS, 2),
              "ratio": round(ray_s / plain_s, 3)}
    print(f"grid overhead: {POINTS} tiny points, plain {plain_s:.1f} s, on Ray {ray_s:.1f} s (start-up included): "
          f"{result['overhead_per_point_s']} s per point, ratio {result['ratio']}")
    return result


if __name__ == "__main__":
    main()
