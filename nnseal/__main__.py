"""``python -m nnseal``: the same command line as the ``nnseal`` console script."""

from nnseal.cli import main

if __name__ == "__main__":
    main(prog_name="nnseal")
