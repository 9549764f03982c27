"""The command line: typer + rich, acting as the local admin."""
