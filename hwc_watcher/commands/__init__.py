"""The command line and what its commands print: `run`, `once`, `check`, `demo`, `drill`, and the rest."""
