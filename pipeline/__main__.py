"""``python -m pipeline`` is ``trtforge``."""

from pipeline.cli import main

main()
