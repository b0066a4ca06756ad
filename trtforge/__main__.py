"""``python -m trtforge`` is the ``trtforge`` command."""

from trtforge.pipeline.cli import main

main()
