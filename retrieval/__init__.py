"""Motion databases and text retrieval."""
