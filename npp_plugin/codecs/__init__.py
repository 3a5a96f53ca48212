"""Built-in codecs, one module per codec, each a plugin."""
