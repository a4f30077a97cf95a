"""Files in and out: images, video probe/read/write, and the one atomic-output scheme every writer uses.

Nothing is imported here, so each command loads only the readers and writers it needs.
"""
