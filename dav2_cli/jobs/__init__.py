"""What each command asks for: its options, its output plan, how it runs, and its exit code.

Nothing is imported here: cli.py imports the one job a command needs, after parsing.
"""
