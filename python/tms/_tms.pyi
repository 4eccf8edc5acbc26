# Stubs of the native module tms._tms (python/src/lib.rs). The public API, typed, is tms/__init__.py;
# these functions take its arguments already converted (settings as JSON text, paths as strings).
from typing import Callable, Dict, List, Optional, Tuple

__version__: str

Progress = Optional[Callable[[int, int, float], object]]

class NativeRun:
    """A run: its config.json, results.json and W [instances, m, n], b [instances, n]."""

    def config_json(self) -> str: ...
    def results_json(self) -> str: ...
    def metrics_json(self) -> str: ...
    def weights(self) -> Tuple[bytes, bytes]:
        """(W, b) as little-endian f32 bytes."""
    def w2(self) -> Optional[bytes]:
        """W2 as little-endian f32 bytes for the untied model (``abs``), else None."""
    def save(self, dir: str, force: bool) -> None: ...

def train(
    flags: str,
    config_path: Optional[str],
    config_json: Optional[str],
    backend: str,
    adapter: Optional[str],
    devices: Optional[List[str]],
    shard: Optional[str],
    out: Optional[str],
    force: bool,
    checkpoint_every: Optional[int],
    progress: Progress,
) -> NativeRun: ...
def resume(
    dir: str,
    backend: str,
    adapter: Optional[str],
    devices: Optional[List[str]],
    checkpoint_every: Optional[int],
    progress: Progress,
) -> NativeRun: ...
def load(dir: str) -> NativeRun: ...
def reproduce(args: List[str], progress: Progress) -> None: ...
def sae(args: List[str]) -> str:
    """Runs tms sae ARGS; returns the sae.json it wrote."""
def load_sae(dir: str) -> str:
    """DIR/sae.json, checked."""
def devices() -> List[Dict[str, str]]: ...
def settings() -> List[Tuple[str, str, str, List[str], bool]]:
    """Every setting of tms train: (keyword, flag, help, possible values, takes a list)."""
