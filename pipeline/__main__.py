"""``python -m trtforge.pipeline`` is ``trtforge``."""

from trtforge.pipeline.cli import main

main()
