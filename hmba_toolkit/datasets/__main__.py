"""``python -m hmba_toolkit.datasets``: generate the demo data now and print where it is."""

from . import fetch_demo

if __name__ == "__main__":
    print(fetch_demo())
