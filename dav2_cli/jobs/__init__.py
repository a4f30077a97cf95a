"""What each command asks for: its options, its output plan, how it runs, and its exit code.

Nothing is imported here: each command of `dav2_cli.cli` imports the one job it needs, after parsing.
"""
