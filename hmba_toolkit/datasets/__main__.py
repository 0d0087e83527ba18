"""``python -m hmba_toolkit.datasets``: generate every demo dataset now and print where they are."""

from . import fetch_demo, fetch_demo_ahba, fetch_demo_brainspan, fetch_demo_mouse_ish

if __name__ == "__main__":
    for fetch in (fetch_demo, fetch_demo_ahba, fetch_demo_mouse_ish, fetch_demo_brainspan):
        print(fetch())
