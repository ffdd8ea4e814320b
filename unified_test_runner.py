"""Entry point kept at the project root so `python unified_test_runner.py` works."""

from runner.entry import console

if __name__ == "__main__":
    console()
