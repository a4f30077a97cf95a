from dav2_cli.cli import main

main(prog_name="dav2")
