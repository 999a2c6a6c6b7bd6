"""Small helpers every layer shares: the one error type for bad input, paths and safe names inside
the models folder, atomic writes, file stamps, and running the pack's command lines. Imports nothing
of the pack and nothing heavy."""
