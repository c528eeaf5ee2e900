"""LoRA files of HunyuanVideo in every circulating format: name table, reader, writer, merge into weights."""
