"""`python -m safethreads`: a short tour of the library."""

if __name__ == "__main__":
    from safethreads._tour import main

    raise SystemExit(main())
