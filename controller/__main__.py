"""``python -m controller`` is the ``vapi-reconciler`` console script."""

from controller.start import main

main()
