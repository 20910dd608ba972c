from trigear.cli import main

main()
