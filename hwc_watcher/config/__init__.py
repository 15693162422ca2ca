"""The loader: the admin's TOML file, validated once, into the frozen settings of `core.settings`."""
