"""Shared fixtures: the bundled tokenizer and tiny random Llama models built in code (no download)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from forgetlab.config import DataConfig, LoraSettings
from forgetlab.model import ensure_bundled_cache

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs the tiny-model tests in two workers on two cores: one thread each (and in the commands they
    # start), or the workers' thread pools fight over the cores and everything runs slower than one worker.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
TINY_LORA = LoraSettings(rank=4, alpha=8, dropout=0.0, targets=("q_proj", "v_proj"))
FEW_FACTS = DataConfig(facts={"entities": 2})


@pytest.fixture(scope="session")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ensure_bundled_cache())


def tiny_llama(vocab_size: int, seed: int = 0, dtype=torch.float32, hidden: int = 32, layers: int = 2):
    """A random 2-layer Llama small enough to train in a second."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=True, pad_token_id=2, bos_token_id=1,
                         eos_token_id=2)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).to(dtype).eval()


@pytest.fixture
def tiny(tokenizer):
    return tiny_llama(len(tokenizer))


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, tokenizer) -> Path:
    """A tiny random model saved as a local HF directory, for the CLI (`--model DIR`)."""
    path = tmp_path_factory.mktemp("tiny-model")
    tiny_llama(len(tokenizer)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def call_main(capsys, *args: str) -> subprocess.CompletedProcess:
    """Run `forgetlab.cli.main(args)` in this process (no interpreter start-up): exit code and captured output,
    shaped like `run_cli`'s result. Argument errors exit through argparse's SystemExit; they count too."""
    from forgetlab.cli import main

    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return subprocess.CompletedProcess(["forgetlab", *args], code, out.out, out.err)


def run_cli(*args: str, timeout: int = 600, **kw) -> subprocess.CompletedProcess:
    """Run the real `forgetlab` entry point of this environment."""
    exe = Path(sys.executable).with_name("forgetlab")
    env = dict(os.environ, HF_HUB_OFFLINE="1", COLUMNS="200")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout, env=env, **kw)


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium for the reports and the console (tests/browser.py), one per test process; skipped, with the
    reason printed, only where no Chromium is installed (`make setup` installs Debian's `chromium` where it can)."""
    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM, launch

    if CHROMIUM is None:
        pytest.skip("no Chromium here and `make setup` could not install it (apt-get install chromium)")

    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()
