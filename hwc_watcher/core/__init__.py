"""The pure core: parse a signal, judge and route it, compose the mails, plan each step. No network, no
files, no clock, no threads (tests/test_architecture.py checks it)."""
