"""``python -m controller`` is the ``vapi-reconciler`` console script."""

from controller.cli import main

main()
