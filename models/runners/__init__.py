"""One module per runner; each is loaded by reference inside its own process."""
