"""Package data: the default model weights (``default.pt``) and its config (``default.json``)."""
