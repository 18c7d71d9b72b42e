"""`python -m s3longbow` runs the command-line interface."""

from s3longbow.cli.entry import main

if __name__ == "__main__":
    main()
