"""Test support: naive reference implementations, JACK helpers, fuzz budgets and the soak driver.  No tests here."""
