"""HunyuanCustom: the HunyuanVideo DiT with identity, audio and video-condition inputs."""
