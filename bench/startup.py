"""Where the tiny default's `sample.py --prompt "a red circle moving left"` spends its wall time:
a first run (empty compilation cache) and a second run (the cache the first one filled), each a
fresh process, phase by phase.

  python bench/startup.py            # both runs, one table (seconds)
  python bench/startup.py --runs 3   # the second column is the median of runs 2..3

Phases are timed by wrapping the pipeline's methods in the child process; "rest" is what is
left of the process's wall time (interpreter start, argument checks, writing the mp4, exit).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
PROMPT = "a red circle moving left"
PHASES = {  # pipeline method -> row
    "from_config": "load models (VAE restored, DiT and text encoders set up)",
    "encode_prompt": "encode the prompt (text encoders restored on first use)",
    "sample_latents": "denoise (DiT restored and placed, 20 steps)",
    "decode": "VAE decode",
}


def child(save_path: str) -> None:
    """Runs sample.py's main in this process with the pipeline's phases timed; prints them and
    the backend as JSON on the last line."""
    start = time.perf_counter()
    import jax  # timed on its own: the floor every command pays

    imported_jax = time.perf_counter()
    sys.path.insert(0, str(ROOT))
    import sample
    from configs.command_line import exit_at_once
    from hyv_jax.sampling.pipeline import TextToVideoPipeline

    imported = time.perf_counter()
    times = {"import jax": imported_jax - start, "import sample.py's modules": imported - imported_jax}
    for name in PHASES:
        method = getattr(TextToVideoPipeline, name)

        def timed(*args, _method=method, _name=name, **kwargs):
            t = time.perf_counter()
            try:
                return _method(*args, **kwargs)
            finally:
                times[PHASES[_name]] = times.get(PHASES[_name], 0.0) + time.perf_counter() - t

        # from_config comes bound to the class and is called on it: the plain wrapper serves both
        setattr(TextToVideoPipeline, name, timed)
    sample.main(["--prompt", PROMPT, "--save-path", save_path])
    print(json.dumps({"backend": jax.default_backend(), "times": times}))
    exit_at_once()  # as sample.py ends


def run_once(cache: str, save_path: str) -> tuple[str, dict[str, float]]:
    """(backend, seconds per phase) of one fresh sample.py process on `cache`."""
    env = dict(os.environ, HYV_JAX_COMPILE_CACHE=cache)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--child", save_path], env=env, cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    wall = time.perf_counter() - start
    result = json.loads(out.strip().splitlines()[-1])
    times = result["times"]
    times["rest"] = wall - sum(times.values())
    times["wall (fresh process)"] = wall
    return result["backend"], times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=2, help="runs on one cache (>= 2): the first, then the median of the others")
    p.add_argument("--child", metavar="SAVE_PATH", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child)
        return
    if args.runs < 2:
        raise SystemExit("--runs must be >= 2 (a first run fills the cache the others read)")
    with tempfile.TemporaryDirectory() as tmp:
        backends, runs = zip(*(run_once(str(Path(tmp) / "cache"), str(Path(tmp) / "videos")) for _ in range(args.runs)))
    rows = list(runs[0])
    print(f"sample.py --prompt {PROMPT!r}, tiny default, jax backend {backends[0]}, {os.cpu_count()} CPU cores (seconds)\n")
    print(f"| {'phase':<66} | first run | second run |")
    print(f"|{'-' * 68}|----------:|-----------:|")
    for row in rows:
        later = statistics.median(r[row] for r in runs[1:])
        print(f"| {row:<66} | {runs[0][row]:9.2f} | {later:10.2f} |")


if __name__ == "__main__":
    main()
