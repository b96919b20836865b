"""Files shipped with the package. DEMO_CHECKPOINT: the built-in demo MTP model (Meta format, 4 heads,
SentencePiece tokenizer); see demo/MODEL_CARD.md. Load it with `evalharness.models.load_mtp_checkpoint(DEMO_CHECKPOINT)`."""
from pathlib import Path

DEMO_CHECKPOINT = Path(__file__).resolve().parent / "demo"

__all__ = ["DEMO_CHECKPOINT"]
