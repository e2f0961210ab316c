"""``python -m fabricnms`` entry point."""

from fabricnms.cli import main

if __name__ == "__main__":
    main()
