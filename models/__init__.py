"""Library code (motion, rendering, neural models); importable and tested without ComfyUI."""
