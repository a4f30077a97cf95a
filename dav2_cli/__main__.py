from .cli import main

main(prog_name="dav2")
