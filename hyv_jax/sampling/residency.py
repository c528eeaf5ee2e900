"""When the DiT occupies the devices during a pipeline call. The text encoders are always
loaded for encoding and freed right after; the VAE stays (it is small).

"resident": the DiT is placed when the first denoising loop needs it (after the text encoders
were freed) and stays for later calls; "sequential": it is freed after each denoising loop,
before the VAE decodes, and placed again by the next call; "auto" (sample.py): resident where
the memory plan fits the device, else sequential."""

RESIDENCIES = ("resident", "sequential")
RESIDENCY_CHOICES = ("auto", *RESIDENCIES)


def check_residency(residency: str) -> str:
    if residency not in RESIDENCIES:
        raise ValueError(f"unknown residency {residency!r}; choose one of {RESIDENCIES}")
    return residency
