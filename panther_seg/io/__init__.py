"""Reading and verifying images, writing outputs atomically, and where each output goes."""
