from dynoctl.cli import main

main()
