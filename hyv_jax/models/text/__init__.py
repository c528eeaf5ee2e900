"""Text encoders: the LLaVA-Llama-3 language model, CLIP-L's text model, prompt templates and
tokenizers, behind one `TextEncoder` facade (text_encoder.py)."""
