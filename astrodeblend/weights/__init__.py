"""Package data: the default model (``default.pt``) and its model-card data (``default.json``).

(The folder is not called ``data`` because `astrodeblend.data` is the
training-set module.)
"""
