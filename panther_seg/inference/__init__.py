"""The pipeline's steps, in the order data flows: preprocess, sliding-window network, post-process, back to the input grid; ``pipeline`` wires them."""
