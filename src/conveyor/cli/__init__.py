"""The `conveyor` command line (typer + rich)."""
