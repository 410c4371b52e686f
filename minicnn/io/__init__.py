"""File formats: ``safetensors`` (the format torch and Hugging Face read) and ``checkpoint``
(a model, its optimizer and RNG states, the run's config and metrics, in safetensors files)."""
