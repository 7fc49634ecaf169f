"""``python -m chestlens.cli``; guarded so that worker processes importing it do not run the CLI."""

from chestlens.cli import main

if __name__ == "__main__":
    main()
