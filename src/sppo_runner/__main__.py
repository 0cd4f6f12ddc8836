"""``python -m sppo_runner`` is ``sppo-run`` (how torchrun starts the ranks: ``torchrun ... -m sppo_runner``)."""

from sppo_runner.cli import train_main

if __name__ == "__main__":
    train_main()
