"""forgetlab: teach a language model new things with LoRA, make it forget on purpose, and measure it all."""

__version__ = "0.1.0"
