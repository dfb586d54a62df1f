"""``python -m routilux.cli``: the same as the ``routilux`` console script."""

from . import main

if __name__ == "__main__":
    main()
